"""Rendering of `verifier plan`: sources, Service Connect as declared, risks, and the calls of a run."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.markup import escape

from verifier.aws.mirroring import planned_calls
from verifier.aws.planning import PlanOutcome


def plan_to_dict(outcome: PlanOutcome) -> dict[str, Any]:
    return {
        "sources": [asdict(source) for source in outcome.sources],
        "service_connect": [asdict(declaration) for declaration in outcome.declarations],
        "vxlan_ingress": asdict(outcome.vxlan_ingress) if outcome.vxlan_ingress is not None else None,
        "runs": [
            {
                "run_id": plan.run_id,
                "not_mirrorable": [{"eni": eni, "why": why} for eni, why in plan.unmirrorable],
                "coverage_risks": list(plan.risks),
                "calls": [
                    {"operation": operation, "parameters": params}
                    for operation, params in planned_calls(plan)
                ],
            }
            for plan in outcome.plans
        ],
    }


def render_plan(outcome: PlanOutcome, console: Console) -> None:
    console.print(f"[bold]Sources[/] ({len(outcome.sources)})")
    for source in outcome.sources:
        origin = source.service_name or source.task_arn or source.kind
        console.print(
            f"  {escape(source.eni_id)} {escape(source.private_ip or '')} {escape(origin)}: "
            f"{source.eligibility} ({escape(source.eligibility_reason)})"
        )
    if outcome.declarations:
        console.print("[bold]Service Connect, as declared[/]")
        for declaration in outcome.declarations:
            tls = f"TLS by {declaration.pca_arn}" if declaration.tls_enabled else "no TLS"
            console.print(f"  {escape(declaration.service)}/{escape(declaration.port_name)}: {escape(tls)}")
    reachability = outcome.vxlan_ingress
    if reachability is not None:
        groups = ", ".join(reachability.groups) or "none"
        if reachability.missing:
            missing = ", ".join(reachability.missing)
            console.print(
                f"[bold red]VXLAN (UDP 4789) to {escape(reachability.target_eni)} is not allowed from[/] "
                f"{escape(missing)} (its security groups: {escape(groups)}): those sources' packets would be "
                "dropped; allow UDP 4789 from them"
            )
        else:
            console.print(f"VXLAN (UDP 4789) to {escape(reachability.target_eni)}: allowed from every source")
        for sentence in reachability.how:
            console.print(f"  {escape(sentence)}")
    for plan in outcome.plans:
        console.print(f"[bold]Run {escape(plan.run_id)}[/]: no call below is made by `verifier plan`")
        for eni, why in plan.unmirrorable:
            console.print(f"  not mirrorable: {escape(eni)}: {escape(why)}")
        for risk in plan.risks:
            console.print(f"  coverage risk: {escape(risk)}")
        for operation, params in planned_calls(plan):
            console.print(f"  {operation} {escape(repr(params))}")
