"""The deployed stack and function, seen from an operator's shell: the stack's outputs (CloudFormation
DescribeStacks) and one synchronous invocation of the function (Lambda Invoke, what `aws lambda invoke` does).

boto3 is the only third-party import, so the installed `fund-collector` command runs wherever boto3 does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import CollectorError

#: Lambda's longest run: an invocation is waited for that long (plus a margin) rather than cut short.
_LAMBDA_MAX_SECONDS = 900


class DeploymentError(CollectorError):
    """The stack or the function could not be read or reached; the AWS error, if any, is the cause."""

    kind = "deployment"


@dataclass(frozen=True)
class InvocationResult:
    """What the function answered: its returned JSON, or its error document when `function_error` is set."""

    function: str
    payload: Any
    #: Lambda's FunctionError ("Unhandled" when the handler raised); None when the function returned.
    function_error: str | None
    executed_version: str | None

    @property
    def error_line(self) -> str:
        """`errorType: errorMessage` of a failed invocation, as Lambda reports a raised exception."""
        if isinstance(self.payload, dict):
            kind = self.payload.get("errorType") or self.function_error
            message = " ".join(str(self.payload.get("errorMessage", "")).split())
            return f"{kind}: {message}" if message else str(kind)
        return f"{self.function_error}: {' '.join(str(self.payload).split())}"


def client(service: str, region: str | None) -> Any:
    """A boto3 client of its own session (AWS_PROFILE, AWS_ENDPOINT_URL_<SERVICE>... are read now)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    if service == "lambda":
        # One attempt, and as long as the function may run: retrying an invocation the function may
        # already be running would collect twice, and cutting the wait short hides its answer.
        config = Config(connect_timeout=5, read_timeout=_LAMBDA_MAX_SECONDS + 10, retries={"total_max_attempts": 1})
    else:
        config = Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 3})
    try:
        return boto3.session.Session(region_name=region).client(service, config=config)  # type: ignore[call-overload]
    except BotoCoreError as error:
        raise DeploymentError(f"could not create a {service} client: {error}") from error


def stack_output(stack: str, key: str, region: str | None, cloudformation: Any = None) -> str:
    """The value of output `key` of CloudFormation stack `stack` (the template's TableName, FunctionName...)."""
    described = _describe(stack, region, cloudformation)
    outputs = {output["OutputKey"]: output.get("OutputValue", "") for output in described.get("Outputs") or []}
    if not outputs.get(key):
        raise DeploymentError(
            f"stack {stack!r} ({described.get('StackStatus', 'status unknown')}) has no output {key!r} "
            f"(its outputs: {', '.join(sorted(outputs)) or 'none'}): is it the collector's stack?"
        )
    return str(outputs[key])


def stack_parameter(stack: str, key: str, region: str | None, cloudformation: Any = None) -> str | None:
    """The value stack `stack` was deployed with for parameter `key` (None when it has no such parameter)."""
    parameters = _describe(stack, region, cloudformation).get("Parameters") or []
    values = {p["ParameterKey"]: p.get("ResolvedValue", p.get("ParameterValue")) for p in parameters}
    value = values.get(key)
    return str(value) if value is not None else None


def _describe(stack: str, region: str | None, cloudformation: Any = None) -> dict[str, Any]:
    from botocore.exceptions import BotoCoreError, ClientError

    cloudformation = cloudformation or client("cloudformation", region)
    try:
        (described,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except (ClientError, BotoCoreError) as error:
        where = cloudformation.meta.region_name
        raise DeploymentError(f"could not read stack {stack!r} (region {where}): {error}") from error
    return dict(described)


def invoke(function: str, event: Any, region: str | None, lambda_client: Any = None) -> InvocationResult:
    """Invoke `function` synchronously with `event` and return what it answered."""
    from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

    lambda_client = lambda_client or client("lambda", region)
    try:
        response = lambda_client.invoke(
            FunctionName=function,
            InvocationType="RequestResponse",
            Payload=json.dumps(event).encode(),
        )
        raw = response["Payload"].read()
    except ReadTimeoutError as error:
        raise DeploymentError(
            f"no answer from {function!r} within {_LAMBDA_MAX_SECONDS + 10} s; it may still be running "
            "(its outcome record will show what it did)"
        ) from error
    except (ClientError, BotoCoreError) as error:
        where = lambda_client.meta.region_name
        raise DeploymentError(f"could not invoke {function!r} (region {where}): {error}") from error
    text = raw.decode("utf-8", "replace")
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        payload = text
    return InvocationResult(function, payload, response.get("FunctionError"), response.get("ExecutedVersion"))
