"""Is this machine an EC2 instance, and which one? Asked of the instance metadata service (IMDSv2), without
boto3, so that ``verifier`` can tell cheaply whether it runs on the collector itself.

IMDSv2 (AWS docs, "Use the Instance Metadata Service to access instance metadata"): a PUT to
/latest/api/token with the header X-aws-ec2-metadata-token-ttl-seconds returns a session token; every GET
then carries it in X-aws-ec2-metadata-token (a GET without it is answered 401 where IMDSv2 is required).
The token's PUT response has an IP hop limit of 1 by default, so inside a container on the instance it
never arrives: that ends in the timeout, as on a machine that is not on EC2 at all.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

DEFAULT_BASE_URL = "http://169.254.169.254"
_TOKEN_TTL_SECONDS = "60"  # the token is used at once, for three requests
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# The shapes AWS gives these identifiers; anything else means the answer is not from EC2's IMDS.
_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
_ACCOUNT_ID = re.compile(r"[0-9]{12}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]+")
_ENI_ID = re.compile(r"eni-[0-9a-f]{8,17}")


@dataclass(frozen=True, slots=True)
class InstanceIdentity:
    instance_id: str
    region: str
    account_id: str
    instance_type: str
    network_interface_id: str  # the primary ENI (device index 0), the one a mirror target would name


def instance_identity(base_url: str = DEFAULT_BASE_URL, timeout: float = 0.5) -> InstanceIdentity | None:
    """This instance's identity from IMDSv2; None when there is no EC2 metadata service to ask (refused,
    silent past ``timeout`` seconds per request, or answering something that is not IMDS)."""
    # IMDS is link-local: a proxy from HTTP_PROXY cannot reach it and would only delay the answer.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def fetch(method: str, path: str, headers: dict[str, str]) -> str | None:
        request = urllib.request.Request(base_url + path, method=method, headers=headers)
        try:
            with opener.open(request, timeout=timeout) as response:
                body: bytes = response.read(65536)
        except urllib.error.HTTPError as exc:
            exc.close()
            return None
        except (OSError, ValueError):  # refused, unreachable, timed out, or not HTTP at all
            return None
        try:
            return body.decode("ascii").strip()
        except UnicodeDecodeError:
            return None

    token = fetch("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": _TOKEN_TTL_SECONDS})
    if not token:
        return None
    with_token = {"X-aws-ec2-metadata-token": token}
    document_text = fetch("GET", "/latest/dynamic/instance-identity/document", with_token)
    mac = fetch("GET", "/latest/meta-data/mac", with_token)
    if document_text is None or mac is None or not _MAC.fullmatch(mac):
        return None
    interface_id = fetch("GET", f"/latest/meta-data/network/interfaces/macs/{mac}/interface-id", with_token)
    try:
        document = json.loads(document_text)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    identity = InstanceIdentity(
        instance_id=str(document.get("instanceId", "")),
        region=str(document.get("region", "")),
        account_id=str(document.get("accountId", "")),
        instance_type=str(document.get("instanceType", "")),
        network_interface_id=interface_id or "",
    )
    if not (
        _INSTANCE_ID.fullmatch(identity.instance_id)
        and _REGION.fullmatch(identity.region)
        and _ACCOUNT_ID.fullmatch(identity.account_id)
        and identity.instance_type
        and _ENI_ID.fullmatch(identity.network_interface_id)
    ):
        return None
    return identity
