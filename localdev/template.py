"""Reading what `make run` and the tests need from template.yaml: the table definition and the handler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "template.yaml"


class _CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that keeps CloudFormation's short-form intrinsics (!Ref, !Sub, ...) as plain values."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {f"Fn::{suffix}" if suffix not in ("Ref", "Condition") else suffix: value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open() as stream:
        document: dict[str, Any] = yaml.load(stream, Loader=_CloudFormationLoader)
    return document


def resource_of_type(template: dict[str, Any], resource_type: str) -> tuple[str, dict[str, Any]]:
    """The one resource of this type that every deployment has (conditional ones belong to optional modes)."""
    matches = [
        (name, r)
        for name, r in template["Resources"].items()
        if r.get("Type") == resource_type and "Condition" not in r
    ]
    if len(matches) != 1:
        raise LookupError(f"template.yaml should declare exactly one {resource_type}, found {len(matches)}")
    return matches[0]


def table_definition(template: dict[str, Any]) -> dict[str, Any]:
    """CreateTable arguments (keys, billing mode) and the TTL attribute, as the template declares them."""
    _, table = resource_of_type(template, "AWS::DynamoDB::Table")
    properties = table["Properties"]
    return {
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
        "TtlAttribute": properties.get("TimeToLiveSpecification", {}).get("AttributeName"),
    }


def function_entry_point(template: dict[str, Any]) -> tuple[Path, str, str]:
    """(code directory, module, function) of the Lambda function, from CodeUri and Handler."""
    _, function = resource_of_type(template, "AWS::Serverless::Function")
    properties = {**template.get("Globals", {}).get("Function", {}), **function["Properties"]}
    module, _, attribute = properties["Handler"].rpartition(".")
    return REPO / properties["CodeUri"], module, attribute


def create_table_from_template(client: Any, name: str, template: dict[str, Any] | None = None) -> None:
    definition = table_definition(template or load_template())
    ttl_attribute = definition.pop("TtlAttribute")
    client.create_table(TableName=name, **definition)
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    if ttl_attribute:
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
        )
