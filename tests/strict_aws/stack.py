"""The identity policies of ``RevieeeTaskRole`` in deploy/cloudformation.yml, with the template's
intrinsic functions resolved as CloudFormation would for a stack in the sandbox.

CloudFormation's rules (AWS CloudFormation user guide, "Intrinsic function reference"): ``Ref`` of
a parameter is its value (its Default when not given), of a resource its physical id (for
``AWS::ECS::Cluster`` the name, for ``AWS::ServiceDiscovery::PrivateDnsNamespace`` the namespace
id, for ``AWS::Logs::LogGroup`` the name, for ``AWS::IAM::Role`` the role name); ``Fn::GetAtt``
of ``Arn``; ``Fn::Sub`` with ``${Name}`` and ``${Resource.Attribute}``; ``Fn::Join``,
``Fn::Select``, ``Fn::Split``, ``Fn::If`` on a condition (``Fn::And``, ``Fn::Or``, ``Fn::Not``,
``Fn::Equals``); ``AWS::NoValue`` removes the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cfnlint.decode import decode_str

from bot.sandbox import CLUSTER, EXECUTION_ROLE_ARN, REGION

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "cloudformation.yml"
ACCOUNT = "123456789012"
STACK = CLUSTER  # the stack names the cluster after itself
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{STACK}-RevieeeTaskRole-SANDBOX"
NO_VALUE = object()


class Stack:
    """The template resolved for one set of parameters and the sandbox's physical ids."""

    def __init__(
        self,
        namespace_id: str,
        parameters: dict[str, str] | None = None,
        template: Path = TEMPLATE,
        stack_name: str = STACK,
        physical: dict[str, str] | None = None,
        arns: dict[str, str] | None = None,
    ) -> None:
        """``physical`` and ``arns`` (by logical id) are a created stack's own ids; by default
        the sandbox's, as CloudFormation would name them for the stack ``revieee-sandbox``."""
        self.template, matches = decode_str(template.read_text())
        assert not matches, matches
        self.parameters = {
            name: str(spec.get("Default", ""))
            for name, spec in self.template.get("Parameters", {}).items()
        }
        self.parameters.update(parameters or {})
        self.pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.stack_name = stack_name
        self.physical = {
            "Cluster": CLUSTER,
            "EnvironmentLogGroup": f"/revieee/{STACK}/environments",
            **(physical or {}),
            "Namespace": namespace_id,
        }
        self.arns = {
            "Cluster": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{self.physical['Cluster']}",
            "EnvironmentExecutionRole": EXECUTION_ROLE_ARN,
            "RevieeeTaskRole": ROLE_ARN,
            **(arns or {}),
        }

    def role_policies(self, role: str = "RevieeeTaskRole") -> list[dict[str, Any]]:
        """The role's inline policies' documents, resolved."""
        props = self.template["Resources"][role]["Properties"]
        return [self.resolve(p["PolicyDocument"]) for p in props.get("Policies", [])]

    # -- intrinsics --------------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.resolve(i) for i in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, value),) = node.items()
            if key == "Ref":
                return self._ref(value)
            if key == "Fn::GetAtt":
                resource, attr = value.split(".", 1) if isinstance(value, str) else value
                return self._get_att(resource, attr)
            if key == "Fn::Sub":
                return self._sub(value)
            if key == "Fn::Join":
                sep, items = value
                return sep.join(str(i) for i in self.resolve(items))
            if key == "Fn::Select":
                index, items = value
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                sep, text = value
                return str(self.resolve(text)).split(sep)
            if key == "Fn::If":
                name, yes, no = value
                return self.resolve(yes if self.condition(name) else no)
            if key == "Fn::And":  # 2 to 10 conditions
                assert 2 <= len(value) <= 10, value
                return all(self.resolve(v) for v in value)
            if key == "Fn::Or":
                assert 2 <= len(value) <= 10, value
                return any(self.resolve(v) for v in value)
            if key == "Fn::Not":
                return not self.resolve(value[0])
            if key == "Fn::Equals":
                a, b = value
                return self.resolve(a) == self.resolve(b)
            if key == "Condition":
                return self.condition(value)
        out = {}
        for key, value in node.items():
            resolved = self.resolve(value)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            spec = self.template["Parameters"][name]
            value = self.parameters[name]
            if str(spec.get("Type", "")).startswith(("List<", "CommaDelimitedList")):
                return [v for v in value.split(",") if v]
            return value
        if name in self.physical:
            return self.physical[name]
        if name in self.template["Resources"]:
            return f"{self.stack_name}-{name}-SANDBOX"
        raise KeyError(f"Ref to unknown {name!r}")

    def _get_att(self, resource: str, attr: str) -> str:
        if attr == "Arn" and resource in self.arns:
            return self.arns[resource]
        if attr == "Arn":
            kind = self.template["Resources"][resource]["Type"]
            if kind == "AWS::IAM::Role":
                return f"arn:aws:iam::{ACCOUNT}:role/{self._ref(resource)}"
        raise KeyError(f"GetAtt {resource}.{attr} is not modelled")

    def _sub(self, value: Any) -> str:
        text, variables = (value, {}) if isinstance(value, str) else value
        variables = {k: self.resolve(v) for k, v in variables.items()}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                resource, attr = name.split(".", 1)
                return self._get_att(resource, attr)
            resolved = self._ref(name)
            return ",".join(resolved) if isinstance(resolved, list) else str(resolved)

        # ``${!Literal}`` is written as ``${Literal}`` (Fn::Sub reference)
        return re.sub(r"\$\{([^}!]+)\}", one, text).replace("${!", "${")
