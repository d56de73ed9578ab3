"""verifier.core.targets: the pre-flight guess of whether AWS will mirror an ENI, from the limitations AWS
documents (Traffic Mirroring guide, "Traffic Mirroring limitations", Instance types)."""

from __future__ import annotations

import pytest

from verifier.core.targets import Eligibility, instance_family, judge_eligibility


@pytest.mark.parametrize(
    ("instance_type", "hypervisor", "bare_metal", "eligibility", "reason"),
    [
        ("m5.large", "nitro", False, "likely", "is a Nitro instance type"),
        ("t3.micro", "nitro", False, "likely", "is a Nitro instance type"),
        # Nitro families AWS lists as not mirrored
        ("m7i-flex.large", "nitro", False, "unlikely", "not available on m7i-flex instances"),
        ("c6i.xlarge", "nitro", False, "unlikely", "not available on c6i instances"),
        ("R7IZ.large", "nitro", False, "unlikely", "not available on r7iz instances"),
        ("trn1n.32xlarge", "nitro", False, "unlikely", "not available on trn1n instances"),
        # bare metal, whether DescribeInstanceTypes or the name says so
        ("m5.metal", "nitro", True, "unlikely", "bare metal"),
        ("i3.metal", None, None, "unlikely", "bare metal"),
        # Xen: only the families AWS lists, and not T2
        ("c4.large", "xen", False, "likely", "non-Nitro families AWS documents as supported"),
        ("x1e.xlarge", "xen", False, "likely", "non-Nitro families AWS documents as supported"),
        ("t2.micro", "xen", False, "unlikely", "not built on Nitro"),
        ("m3.medium", "xen", False, "unlikely", "not built on Nitro"),
        # DescribeInstanceTypes did not answer for it
        ("z9.large", None, None, "unknown", "whether z9.large is built on Nitro is unknown"),
    ],
)
def test_instance_types(
    instance_type: str, hypervisor: str | None, bare_metal: bool | None, eligibility: Eligibility, reason: str
) -> None:
    judged = judge_eligibility(
        interface_type="interface",
        requester_managed=False,
        requester_id=None,
        instance_type=instance_type,
        hypervisor=hypervisor,
        bare_metal=bare_metal,
    )
    assert judged[0] == eligibility
    assert reason in judged[1]


def test_only_interfaces_of_type_interface() -> None:
    for interface_type in ("branch", "trunk", "efa", "nat_gateway"):
        eligibility, reason = judge_eligibility(
            interface_type=interface_type,
            requester_managed=False,
            requester_id=None,
            instance_type="m5.large",
            hypervisor="nitro",
            bare_metal=False,
        )
        assert (eligibility, reason) == (
            "unlikely",
            f"the ENI's type is {interface_type}; AWS mirrors ENIs of type interface only",
        )


def test_requester_managed_enis_are_left_to_aws() -> None:
    # On a Nitro instance, yet ECS manages it: only the session attempt can tell.
    eligibility, reason = judge_eligibility(
        interface_type="interface",
        requester_managed=True,
        requester_id="578734482556",
        instance_type="m5.large",
        hypervisor="nitro",
        bare_metal=False,
    )
    assert eligibility == "unknown"
    assert "requester-managed by 578734482556" in reason


def test_an_eni_on_no_instance() -> None:
    eligibility, _ = judge_eligibility(
        interface_type="interface",
        requester_managed=False,
        requester_id=None,
        instance_type=None,
        hypervisor=None,
        bare_metal=None,
    )
    assert eligibility == "unknown"


def test_instance_family() -> None:
    assert [instance_family(t) for t in ("m7i-flex.large", "C4.8XLARGE", "u-6tb1.metal")] == [
        "m7i-flex",
        "c4",
        "u-6tb1",
    ]
