"""One active probe (``verifier probe``) for people and programs: what the server presented, and the verdict
on its chain."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from rich.console import Console
from rich.markup import escape

from verifier.core.chains import ChainJudgement, summarize_certificate
from verifier.errors import ParseError
from verifier.probe import ProbeResult


def probe_to_dict(result: ProbeResult, judgement: ChainJudgement | None) -> dict[str, Any]:
    target = result.target
    return {
        "target": {"host": target.host, "port": target.port, "sni": target.sni},
        "ok": result.ok,
        "error": result.error,
        "tls_version": result.tls_version,
        "cipher_suite": result.cipher_suite,
        "chain_complete": result.chain_complete,
        "elapsed": round(result.elapsed, 6),
        "certificates": [_certificate(der) for der in result.certificates],
        "identity": judgement.status.value if judgement is not None else None,
        # A probe that could not complete proves nothing either way.
        "verdict": judgement.status.value
        if judgement is not None
        else (None if result.ok else "INCONCLUSIVE"),
        "identity_checks": [
            {"name": check.name, "status": check.status.value, "detail": check.detail}
            for check in (judgement.checks if judgement is not None else ())
        ],
    }


def render_probe(result: ProbeResult, judgement: ChainJudgement | None, console: Console) -> None:
    target = result.target
    where = f"{target.host}:{target.port}" + (f" (SNI {target.sni})" if target.sni else "")
    if result.ok:
        console.print(f"{escape(where)}: {result.tls_version}, {escape(result.cipher_suite or '?')}")
    else:
        reason = escape(result.error or "")
        console.print(f"{escape(where)}: [bold magenta]INCONCLUSIVE[/], no completed handshake: {reason}")
    for position, der in enumerate(result.certificates):
        entry = _certificate(der)
        subject = entry.get("subject", entry.get("error", ""))
        console.print(f"  [{position}] {escape(subject)}  (sha256 {entry['sha256'][:16]}...)")
    if result.certificates and not result.chain_complete:
        console.print("  leaf only: this Python cannot read the rest of the chain")
    if judgement is not None:
        console.print(f"Chain against the given CA: {judgement.status.value}")
        for check in judgement.checks:
            console.print(f"  {check.status.value:12} {check.name}: {escape(check.detail)}")


def _certificate(der: bytes) -> dict[str, Any]:
    entry: dict[str, Any] = {"sha256": hashlib.sha256(der).hexdigest()}
    try:
        summary = summarize_certificate(der)
    except ParseError as exc:
        entry["error"] = f"not a certificate this tool can read: {exc}"
    else:
        entry.update(
            subject=summary.subject,
            issuer=summary.issuer,
            serial=summary.serial,
            not_before=summary.not_before.isoformat(),
            not_after=summary.not_after.isoformat(),
            san_dns=list(summary.san_dns),
        )
    entry["der_base64"] = base64.b64encode(der).decode("ascii")
    return entry
