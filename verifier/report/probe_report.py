"""One active probe (``verifier probe``) for people and programs: what the server presented, and the verdict
on its chain."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from verifier.core.chains import ChainJudgement
from verifier.probe import ProbeResult
from verifier.report.json_report import certificate_to_dict


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
        "certificates": [certificate_to_dict(der) for der in result.certificates],
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
        entry = certificate_to_dict(der)
        subject = entry.get("subject", entry.get("error", ""))
        console.print(f"  [{position}] {escape(subject)}  (sha256 {entry['sha256'][:16]}...)")
    if result.certificates and not result.chain_complete:
        console.print("  leaf only: this Python cannot read the rest of the chain")
    if judgement is not None:
        console.print(f"Chain against the given CA: {judgement.status.value}")
        for check in judgement.checks:
            console.print(f"  {check.status.value:12} {check.name}: {escape(check.detail)}")
