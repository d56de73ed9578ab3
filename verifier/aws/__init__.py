"""The AWS adapter: the only package that imports boto3 and botocore.

Sessions and clients are passed in, never made at import time. Every AWS call goes through
``verifier.aws.calls.call`` with the IAM action it needs written next to it, and
infra/iam/verifier-operator-policy.json grants exactly those actions (tests/aws/test_iam_policy.py).
"""
