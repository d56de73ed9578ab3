"""Who runs verifier: the run record names the caller. STS GetCallerIdentity needs no permission; the policy
lists it all the same, so that "every call is granted" holds without exceptions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verifier.aws.calls import call


@dataclass(frozen=True, slots=True)
class Caller:
    arn: str
    account: str


def caller_identity(sts: Any) -> Caller:
    answer = call(sts, "GetCallerIdentity", iam_action="sts:GetCallerIdentity")
    return Caller(arn=str(answer["Arn"]), account=str(answer["Account"]))
