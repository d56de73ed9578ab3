"""Embedded stand-ins for AWS used by the no-account demo and the tests."""
