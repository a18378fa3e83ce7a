"""AWS's wire formats as the strict layer sees them: which service, action, principal and
parameters a request carries, and errors and answers in each protocol's own shape.

Sources: the JSON 1.1 protocol (``X-Amz-Target: <prefix>.<Action>``, errors as
``{"__type": code, "message": ...}``) used by ECS, Cloud Map, ECR, CodeBuild and CloudWatch
Logs; the query protocol (``Action=...`` form bodies, XML errors) used by EC2, IAM and STS; the
SigV4 ``Authorization`` header (``Credential=<key id>/<date>/<region>/<service>/aws4_request``).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

CREDENTIAL_RE = re.compile(r"Credential=([^/,\s]+)/[0-9]{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
QUERY_SERVICES = {"ec2", "iam", "sts"}


@dataclass
class Call:
    """One AWS API request: ``service`` is the signing name (``ecs``, ``servicediscovery``...)."""

    service: str
    action: str
    params: dict[str, Any]
    key_id: str
    region: str
    method: str = "POST"
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    rewritten: bool = False  # params changed by a rule: the body is sent anew from them
    extra: dict[str, Any] = field(default_factory=dict)  # what a rule keeps for its after()

    @property
    def name(self) -> str:
        return f"{self.service}:{self.action}"

    @property
    def query(self) -> bool:
        return self.service in QUERY_SERVICES

    def rewrite(self, **params: Any) -> None:
        self.params = {**self.params, **params}
        self.rewritten = True

    def wire_body(self) -> bytes:
        if not self.rewritten:
            return self.body
        return json.dumps(self.params).encode()


def parse(method: str, path: str, headers: dict[str, str], body: bytes) -> Call | None:
    """The call a request makes, or None when it is not an AWS API call we understand (moto's
    own ``/moto-api`` endpoints, a plain GET)."""
    auth = headers.get("authorization", "")
    found = CREDENTIAL_RE.search(auth)
    if not found:
        return None
    key_id, region, service = found.groups()
    target = headers.get("x-amz-target", "")
    params: dict[str, Any]
    if target:
        action = target.rsplit(".", 1)[-1]
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {}
    elif service in QUERY_SERVICES:
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        params = {k: v[0] if len(v) == 1 else v for k, v in form.items()}
        action = str(params.pop("Action", ""))
    else:
        return None
    return Call(service, action, params, key_id, region, method, path, headers, body)


@dataclass
class Answer:
    """An HTTP answer in the wire format of the call it answers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


def json_answer(data: Any, status: int = 200) -> Answer:
    body = json.dumps(data, default=str).encode()
    return Answer(status, body, {"Content-Type": "application/x-amz-json-1.1"})


def error(call: Call, code: str, message: str, status: int = 400) -> Answer:
    """An error as the service itself would send it."""
    request_id = str(uuid.uuid4())
    if call.service == "ec2":
        xml = (
            f"<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error><Code>{code}</Code>"
            f"<Message>{_xml(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
        return Answer(status, xml.encode(), {"Content-Type": "text/xml"})
    if call.query:
        xml = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
            f"<Message>{_xml(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return Answer(status, xml.encode(), {"Content-Type": "text/xml"})
    body = json.dumps({"__type": code, "message": message}).encode()
    return Answer(
        status,
        body,
        {
            "Content-Type": "application/x-amz-json-1.1",
            "x-amzn-ErrorType": code,
            "x-amzn-RequestId": request_id,
        },
    )


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
