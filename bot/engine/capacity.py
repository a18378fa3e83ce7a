"""What AWS lets an account run, and whether a deploy or a wake still fits in it.

Two quotas bound how many review environments can run at once, whatever the number of
revieee's workers:

- Fargate's vCPUs per Region, On-Demand and Spot apart (Service Quotas ``fargate``:
  ``L-3032A538`` "Fargate On-Demand vCPU resource count", ``L-36FBB829`` "Fargate Spot vCPU
  resource count"). ECS does not refuse a service over it: it just never places the task and
  says so in the service's events, so the rollout would wait until ``deploy_timeout``.
  revieee reads the applied value (``servicequotas:GetServiceQuota``, cached for
  ``QUOTA_TTL``) unless ``fargate_vcpu_quota`` sets it, and refuses a deploy that would not fit.
- Cloud Map's instances per namespace (2,000 by default, Cloud Map quotas; each running task of
  a service is one instance): ``cloud_map_instances`` (default 2,000).

What is in use is counted from the store (every environment not stopped, asleep or failed; a
redeploy's own environment too, since a rolling update starts the new tasks beside the old), so
two deploys admitted at the same moment may together go over by their own size: ECS then keeps
the last tasks out, and the rollout fails on its timeout with ECS's own words.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from bot.aws import AwsClients, describe_error
from bot.config import Settings

log = logging.getLogger("revieee.capacity")

QUOTA_CODES = {"FARGATE": "L-3032A538", "FARGATE_SPOT": "L-36FBB829"}
QUOTA_TTL = 900.0  # seconds a quota read from Service Quotas is trusted
STEP = "checking AWS quotas"


@dataclass(frozen=True)
class InUse:
    """What the environments other than the one being deployed take now."""

    vcpu: float
    instances: int
    environments: int


class Quotas:
    """The account's Fargate vCPU quotas, read once per ``QUOTA_TTL``."""

    def __init__(
        self,
        clients: AwsClients,
        settings: Settings,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.aws = clients
        self.settings = settings
        self.monotonic = monotonic
        self._read: dict[str, tuple[float, float | None]] = {}  # provider -> (at, value)
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def vcpu(self, provider: str) -> float | None:
        """The vCPUs the account may run on ``provider``; None when unknown (not readable:
        the deploy is then not bounded by it)."""
        if self.settings.fargate_vcpu_quota:
            return float(self.settings.fargate_vcpu_quota)
        code = QUOTA_CODES.get(provider)
        if code is None:
            return None
        with self._lock:
            at, value = self._read.get(provider, (float("-inf"), None))
            if self.monotonic() - at < QUOTA_TTL:
                return value
        try:
            quota = self.aws.quotas.get_service_quota(ServiceCode="fargate", QuotaCode=code)
            value = float(quota["Quota"]["Value"])
        except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as exc:
            if provider not in self._warned:
                self._warned.add(provider)
                log.warning(
                    "cannot read the Fargate vCPU quota %s (%s): deploys are not bounded by it; "
                    "set fargate_vcpu_quota",
                    code,
                    describe_error(exc),
                )
            value = None
        with self._lock:
            self._read[provider] = (self.monotonic(), value)
        return value

    def refusal(self, provider: str, vcpu: float, instances: int, used: InUse) -> str | None:
        """Why ``vcpu`` more vCPUs and ``instances`` more Cloud Map instances do not fit, or
        None when they do."""
        quota = self.vcpu(provider)
        others = f"{used.environments} environment(s)"
        if quota is not None and used.vcpu + vcpu > quota:
            code = QUOTA_CODES.get(provider, "")
            source = (
                "fargate_vcpu_quota"
                if self.settings.fargate_vcpu_quota
                else f"Service Quotas {code}"
            )
            return (
                f"it needs {vcpu:g} vCPU on {provider} and {others} already run "
                f"{used.vcpu:g} of the {quota:g} vCPU the account may run there ({source}): "
                "stop or sleep an environment (`list` shows them), or ask AWS for a higher quota"
            )
        limit = self.settings.cloud_map_instances
        if used.instances + instances > limit:
            return (
                f"it needs {instances} Cloud Map instance(s) and {others} already have "
                f"{used.instances} of the {limit} a namespace may hold (cloud_map_instances): "
                "stop an environment (`list` shows them)"
            )
        return None
