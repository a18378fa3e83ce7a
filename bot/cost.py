"""What an environment costs: its tasks' vCPUs and memory times Fargate's hourly prices.

The defaults are AWS's public on-demand prices for Fargate, Linux/x86, per vCPU-hour and per
GB-hour, for the region revieee runs in (https://aws.amazon.com/fargate/pricing/). Fargate Spot
prices move with the market; the defaults are the usual 70% discount on on-demand. Set
``[prices]`` in the config to what your bill says. An estimate, not an invoice: storage beyond
the free 20 GB, data transfer, load balancers and CloudWatch are not counted.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.config import Settings

# region -> (vCPU-hour, GB-hour), on-demand, Linux/x86, USD
ON_DEMAND: dict[str, tuple[float, float]] = {
    "us-east-1": (0.04048, 0.004445),
    "us-east-2": (0.04048, 0.004445),
    "us-west-2": (0.04048, 0.004445),
    "us-west-1": (0.04656, 0.00511),
    "eu-west-1": (0.04048, 0.004445),
    "eu-west-2": (0.04656, 0.00511),
    "eu-central-1": (0.04656, 0.00511),
    "eu-north-1": (0.04450, 0.00488),
    "ap-southeast-1": (0.05056, 0.00553),
    "ap-southeast-2": (0.04856, 0.00532),
    "ap-northeast-1": (0.05056, 0.00553),
    "ap-south-1": (0.04256, 0.00467),
    "ca-central-1": (0.04456, 0.00488),
    "sa-east-1": (0.0696, 0.0076),
}
DEFAULT_REGION = "us-east-1"
SPOT_FACTOR = 0.3  # Fargate Spot: typically 70% off on-demand


def prices(settings: Settings, region: str | None) -> dict[str, float]:
    """The four prices in use: the region's list prices, overridden by ``[prices]``."""
    vcpu, gb = ON_DEMAND.get(region or DEFAULT_REGION, ON_DEMAND[DEFAULT_REGION])
    out = {
        "fargate_vcpu_hour": vcpu,
        "fargate_gb_hour": gb,
        "fargate_spot_vcpu_hour": round(vcpu * SPOT_FACTOR, 8),
        "fargate_spot_gb_hour": round(gb * SPOT_FACTOR, 8),
    }
    out.update(settings.prices)
    return out


def hourly_rate(
    settings: Settings, price: Mapping[str, float], vcpu: float, memory_gb: float
) -> float:
    """USD per hour for tasks with ``vcpu`` vCPUs and ``memory_gb`` GB in all, placed by the
    configured capacity-provider strategy (its weights; bases are ignored)."""
    weights = {p.provider: p.weight for p in settings.capacity_provider_strategy}
    total = sum(weights.values()) or 1
    spot = weights.get("FARGATE_SPOT", 0) / total
    on_demand = 1 - spot
    per_vcpu = on_demand * price["fargate_vcpu_hour"] + spot * price["fargate_spot_vcpu_hour"]
    per_gb = on_demand * price["fargate_gb_hour"] + spot * price["fargate_spot_gb_hour"]
    return vcpu * per_vcpu + memory_gb * per_gb


def money(usd: float) -> str:
    """``$0.42``, ``$12.30``, ``$1,234``."""
    if usd >= 1000:
        return f"${usd:,.0f}"
    return f"${usd:,.2f}"
