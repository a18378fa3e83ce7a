"""Service Quotas, for the quotas the ECS model enforces (moto's servicequotas knows only VPC's).

``GetServiceQuota`` of ``fargate``/``L-3032A538`` ("Fargate On-Demand vCPU resource count") and
``fargate``/``L-36FBB829`` ("Fargate Spot vCPU resource count") answers the value the ECS model
places tasks by (Service Quotas API reference, GetServiceQuota: the applied value, ``Quota``
with ``Value``, ``Unit``, ``Adjustable``). Other quotas go on to moto.
"""

from __future__ import annotations

from typing import Any

from bot.strict_aws.ecs import Ecs
from bot.strict_aws.wire import Answer, Call, error, json_answer

FARGATE = {"L-3032A538": "FARGATE", "L-36FBB829": "FARGATE_SPOT"}
NAMES = {
    "L-3032A538": "Fargate On-Demand vCPU resource count",
    "L-36FBB829": "Fargate Spot vCPU resource count",
}


class Quotas:
    def __init__(self, ecs: Ecs) -> None:
        self.ecs = ecs

    def before(self, call: Call) -> Answer | None:
        if call.action != "GetServiceQuota" or call.params.get("ServiceCode") != "fargate":
            return None
        code = str(call.params.get("QuotaCode", ""))
        if code not in FARGATE:
            return error(call, "NoSuchResourceException", f"no quota {code} for fargate")
        quota: dict[str, Any] = {
            "ServiceCode": "fargate",
            "ServiceName": "AWS Fargate",
            "QuotaArn": f"arn:aws:servicequotas:{call.region}:123456789012:fargate/{code}",
            "QuotaCode": code,
            "QuotaName": NAMES[code],
            "Value": self.ecs.vcpu_quota[FARGATE[code]],
            "Unit": "None",
            "Adjustable": True,
            "GlobalQuota": False,
        }
        return json_answer({"Quota": quota})

    def after(self, call: Call, answer: Answer) -> Answer:
        return answer
