"""The deployment contract of template.yaml, read the way CloudFormation reads it (cfn-lint's loader).

What the function code relies on (handler, environment, table shape), what keeps the exchange budget
safe (no Lambda retries, one failure queue), least privilege, and the alarms. The slow test builds the
artifact with `sam build` and imports the handler from it in a clean Python 3.12.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from localdev.artifact import lambda_runtime_sdk, native_distributions, runtime_only_entries, size_bytes
from localdev.exchange_emulator import AUTO_COLLECTION_PATH

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO / "template.yaml"
FUNCTION_ID = "CollectorFunction"
ROLE_ID = "CollectorRole"
TABLE_ID = "CollectorTable"
QUEUE_ID = "FailureQueue"
TOPIC_ID = "AlarmTopic"
KEY_ID = "MonitoringKey"
LOG_GROUP_ID = "CollectorLogGroup"

CONTRACT_VARIABLES = {
    "SECRET_ID",
    "TABLE_NAME",
    "BINANCE_BASE_URL",
    "MAX_CALLS_PER_HOUR",
    "RECV_WINDOW_MS",
    "ACCOUNT_LABEL",
    "OUTCOME_RETENTION_DAYS",
    "MAX_ATTEMPTS",
    "HTTP_TIMEOUT_SECONDS",
    "SECRET_MAX_AGE_SECONDS",
    "ACCOUNTS",
    "BALANCE_CHECK",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "POWERTOOLS_TRACE_DISABLED",
    "IP_WEIGHT_PER_MINUTE",
    "IP_WEIGHT_MAX_WAIT_SECONDS",
    "EGRESS_MODE",
    "QUEUE_URL",
}
NAMESPACE = "FundAutoCollector"
#: The metrics' service dimension is the stack name, so two stacks in one account never share alarms.
SERVICE = {"Ref": "AWS::StackName"}
CUSTOM_METRICS = {
    "CollectionSucceeded",
    "CollectionFailed",
    "BudgetExhausted",
    "ExchangeAttempts",
    "WindowUsage",
    "WindowLimit",
    "UsedIpWeight1m",
    "DryRun",
    "BackingOff",
    "DuplicateDelivery",
    "NothingToCollect",
}


def _plain(value: Any) -> Any:
    """cfn-lint's node types turned into plain dicts, lists and strings."""
    return json.loads(json.dumps(value))


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    document, matches = decode(str(TEMPLATE_PATH))
    assert not matches, f"template.yaml does not parse: {matches}"
    assert document is not None
    plain: dict[str, Any] = _plain(document)
    return plain


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    resources: dict[str, Any] = template["Resources"]
    return resources


@pytest.fixture(scope="module")
def function(template: dict[str, Any], resources: dict[str, Any]) -> dict[str, Any]:
    """The function's properties with Globals applied (SAM's merge, enough for scalar properties)."""
    assert resources[FUNCTION_ID]["Type"] == "AWS::Serverless::Function"
    return {**template.get("Globals", {}).get("Function", {}), **resources[FUNCTION_ID]["Properties"]}


@pytest.fixture(scope="module")
def role_statements(resources: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of every inline policy of the execution role, conditional ones included."""
    statements: list[dict[str, Any]] = []
    for entry in resources[ROLE_ID]["Properties"]["Policies"]:
        policy = entry["Fn::If"][1] if "Fn::If" in entry else entry
        for statement in policy["PolicyDocument"]["Statement"]:
            statements.append(statement["Fn::If"][1] if "Fn::If" in statement else statement)
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def _resources(statement: dict[str, Any]) -> list[Any]:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


#: Values for the parameters without a default (the ones `sam deploy --guided` asks for).
REQUIRED_PARAMETERS = {"SecretId": "binance/collector"}


def _parameter_values(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """Every parameter's value as CloudFormation passes it: the defaults, these overrides, lists split."""
    values: dict[str, Any] = {}
    for name, parameter in template["Parameters"].items():
        raw = {**REQUIRED_PARAMETERS, **overrides}.get(name, parameter.get("Default"))
        assert raw is not None, f"parameter {name} has no default: add it to REQUIRED_PARAMETERS"
        values[name] = str(raw).split(",") if parameter["Type"] == "CommaDelimitedList" and raw is not None else raw
    return values


def _evaluate(node: Any, values: dict[str, Any], conditions: dict[str, Any]) -> Any:
    """The value of a condition or rule expression (the intrinsic functions this template uses in them)."""
    if not isinstance(node, dict):
        return node
    ((function, argument),) = node.items()

    def evaluate(item: Any) -> Any:
        return _evaluate(item, values, conditions)

    match function:
        case "Ref":
            return values[argument]
        case "Condition":
            return evaluate(conditions[argument])
        case "Fn::Equals":
            return evaluate(argument[0]) == evaluate(argument[1])
        case "Fn::Not":
            return not evaluate(argument[0])
        case "Fn::And":
            return all(evaluate(item) for item in argument)
        case "Fn::Or":
            return any(evaluate(item) for item in argument)
        case "Fn::Join":
            return argument[0].join(evaluate(argument[1]))
        case "Fn::Split":
            return evaluate(argument[1]).split(argument[0])
        case "Fn::Select":
            return evaluate(argument[1])[int(argument[0])]
        case "Fn::EachMemberEquals":
            return all(member == evaluate(argument[1]) for member in evaluate(argument[0]))
    raise AssertionError(f"{function} is not evaluated by these tests")


def _resolve_branches(node: Any, truth: dict[str, bool]) -> Any:
    """The template tree with every Fn::If decided and AWS::NoValue dropped."""
    if isinstance(node, list):
        items = [_resolve_branches(item, truth) for item in node]
        return [item for item in items if item != {"Ref": "AWS::NoValue"}]
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            condition, when_true, when_false = node["Fn::If"]
            return _resolve_branches(when_true if truth[condition] else when_false, truth)
        resolved = {key: _resolve_branches(value, truth) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value != {"Ref": "AWS::NoValue"}}
    return node


@dataclass(frozen=True)
class Deployed:
    """What CloudFormation creates for one set of parameter values: resources and outputs, conditions decided."""

    resources: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    conditions: dict[str, bool]

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: r for name, r in self.resources.items() if r["Type"] == resource_type}

    def types(self, prefix: str) -> list[str]:
        return sorted(r["Type"] for r in self.resources.values() if r["Type"].startswith(prefix))


def _deploy(template: dict[str, Any], **overrides: str) -> Deployed:
    values = _parameter_values(template, overrides)
    conditions = template["Conditions"]
    truth = {name: bool(_evaluate(expression, values, conditions)) for name, expression in conditions.items()}

    def kept(entry: dict[str, Any]) -> bool:
        return "Condition" not in entry or truth[entry["Condition"]]

    resources = {name: r for name, r in template["Resources"].items() if kept(r)}
    outputs = {name: o for name, o in template["Outputs"].items() if kept(o)}
    return Deployed(_resolve_branches(resources, truth), _resolve_branches(outputs, truth), truth)


def _failed_rules(template: dict[str, Any], **overrides: str) -> list[str]:
    """The assertion descriptions of the template's Rules that refuse these parameter values."""
    values = _parameter_values(template, overrides)
    failed = []
    for rule in template["Rules"].values():
        if _evaluate(rule.get("RuleCondition", True), values, {}):
            failed += [a["AssertDescription"] for a in rule["Assertions"] if not _evaluate(a["Assert"], values, {})]
    return failed


def _strings(value: Any) -> list[str]:
    """Every string inside an intrinsic-function tree (the literal parts of Fn::Sub, Fn::If branches...)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    return []


# ---------------------------------------------------------------------------------------------- function


def test_function_code_and_handler(function: dict[str, Any]) -> None:
    assert function["CodeUri"] == "handler/"
    assert function["Handler"] == "auto_collector.handler.lambda_handler"
    assert (REPO / "handler" / "requirements.txt").is_file()


def test_function_runtime_architecture_and_limits(function: dict[str, Any]) -> None:
    assert function["Runtime"] in ("python3.12", "python3.13")
    assert function["Architectures"] == ["arm64"]
    assert function["MemorySize"] == 256
    assert function["Timeout"] == 60
    # The rolling window handles concurrency; AutoPublishAlias would only add versions to clean up.
    assert "ReservedConcurrentExecutions" not in function
    assert "AutoPublishAlias" not in function


def test_function_runs_with_its_own_role_and_log_group(function: dict[str, Any], resources: dict[str, Any]) -> None:
    assert function["Role"] == {"Fn::GetAtt": [ROLE_ID, "Arn"]}
    assert "Policies" not in function, "permissions live in the explicit role, not SAM policy templates"
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": LOG_GROUP_ID}
    log_group = resources[LOG_GROUP_ID]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert log_group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [KEY_ID, "Arn"]}


def test_environment_carries_the_contract(function: dict[str, Any]) -> None:
    variables = function["Environment"]["Variables"]
    assert set(variables) >= CONTRACT_VARIABLES
    # One account (SECRET_ID) or several (ACCOUNTS): exactly one of them reaches the function.
    assert variables["SECRET_ID"] == {"Fn::If": ["HasAccounts", {"Ref": "AWS::NoValue"}, {"Ref": "SecretId"}]}
    assert variables["ACCOUNTS"] == {"Fn::If": ["HasAccounts", {"Ref": "Accounts"}, {"Ref": "AWS::NoValue"}]}
    assert variables["BALANCE_CHECK"] == {"Ref": "BalanceCheck"}
    assert variables["TABLE_NAME"] == {"Ref": TABLE_ID}
    assert variables["BINANCE_BASE_URL"] == {"Ref": "BinanceBaseUrl"}
    assert variables["MAX_CALLS_PER_HOUR"] == {"Ref": "MaxCallsPerHour"}
    assert variables["RECV_WINDOW_MS"] == {"Ref": "RecvWindowMs"}
    assert variables["ACCOUNT_LABEL"] == {"Ref": "AccountLabel"}
    assert variables["OUTCOME_RETENTION_DAYS"] == {"Ref": "OutcomeRetentionDays"}
    assert variables["POWERTOOLS_SERVICE_NAME"] == SERVICE
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == NAMESPACE
    assert variables["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    assert variables["EGRESS_MODE"] == {"Ref": "EgressMode"}
    # Fan-out only: where a deferred message is handed back (the single-function mode has no queue).
    assert variables["QUEUE_URL"] == {"Fn::If": ["IsFanOut", {"Ref": "WorkQueue"}, {"Ref": "AWS::NoValue"}]}
    # Anything else must never reach the deployed function (local-only variables are NoValue).
    for name in set(variables) - CONTRACT_VARIABLES:
        assert variables[name] == {"Ref": "AWS::NoValue"}, name


def test_attempts_fit_in_the_timeout(function: dict[str, Any]) -> None:
    variables = function["Environment"]["Variables"]
    attempts, http_timeout = int(variables["MAX_ATTEMPTS"]), int(variables["HTTP_TIMEOUT_SECONDS"])
    # Every attempt may wait its full HTTP timeout, plus one server-time sync and the AWS calls.
    assert attempts * http_timeout + http_timeout + 10 <= function["Timeout"]


def test_parameters_have_safe_defaults(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert parameters["ScheduleExpression"]["Default"] == "rate(5 minutes)"
    assert parameters["ScheduleEnabled"]["AllowedValues"] == ["true", "false"]
    budget = parameters["MaxCallsPerHour"]
    assert (budget["Default"], budget["MinValue"], budget["MaxValue"]) == (500, 1, 500)
    assert parameters["RecvWindowMs"]["Default"] == 5000
    assert parameters["RecvWindowMs"]["MaxValue"] <= 60000
    assert parameters["AccountLabel"]["Default"] == "default"
    assert parameters["OutcomeRetentionDays"]["Default"] == 90
    assert parameters["LogLevel"]["Default"] in parameters["LogLevel"]["AllowedValues"]
    assert parameters["LogRetentionDays"]["Default"] in parameters["LogRetentionDays"]["AllowedValues"]
    assert parameters["AlarmEmail"]["Default"] == ""
    assert parameters["TracingEnabled"]["AllowedValues"] == ["true", "false"]
    assert parameters["BinanceBaseUrl"]["Default"] == "https://api.binance.com"
    assert "Default" not in parameters["SecretId"], "the secret must be chosen at deploy time"
    pattern = re.compile(parameters["SecretId"]["AllowedPattern"])
    assert pattern.fullmatch("binance/pm-pro")
    assert pattern.fullmatch("arn:aws:secretsmanager:eu-west-1:123456789012:secret:binance/pm-pro-AbC123")
    assert not pattern.fullmatch("binance key")
    base_url = re.compile(parameters["BinanceBaseUrl"]["AllowedPattern"])
    assert base_url.fullmatch("https://api.binance.com")
    assert not base_url.fullmatch("http://api.binance.com")
    assert not base_url.fullmatch("https://api.binance.com/sapi")


# ---------------------------------------------------------------------------------------------- schedule


SCHEDULE_ID = "CollectionSchedule"
SCHEDULER_ROLE_ID = "SchedulerRole"
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"


def _scheduler_delivery(resources: dict[str, Any], scheduled_time: str, execution_id: str, attempt: int) -> Any:
    """The event the function receives for one delivery attempt: the target input with EventBridge Scheduler's
    context attributes and CloudFormation's pseudo parameters substituted, as AWS does."""
    text = resources[SCHEDULE_ID]["Properties"]["Target"]["Input"]["Fn::Sub"]
    assert isinstance(text, str), "the input is a template of pseudo parameters and context attributes only"
    arn = "arn:aws:scheduler:eu-west-1:123456789012:schedule/default/collector-CollectionSchedule-1A2B3C"
    for placeholder, value in {
        "${AWS::AccountId}": "123456789012",
        "${AWS::Region}": "eu-west-1",
        "<aws.scheduler.scheduled-time>": scheduled_time,
        "<aws.scheduler.schedule-arn>": arn,
        "<aws.scheduler.execution-id>": execution_id,
        "<aws.scheduler.attempt-number>": str(attempt),
    }.items():
        text = text.replace(placeholder, value)
    assert "${" not in text and "<aws." not in text, text
    return json.loads(text)


def test_schedule_is_an_eventbridge_scheduler_schedule(function: dict[str, Any], resources: dict[str, Any]) -> None:
    assert "Events" not in function, "the schedule is a standalone AWS::Scheduler::Schedule (docs/schedule.md)"
    (schedule_id,) = [name for name, r in resources.items() if r["Type"] == "AWS::Scheduler::Schedule"]
    assert schedule_id == SCHEDULE_ID
    properties = resources[SCHEDULE_ID]["Properties"]
    assert properties["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    assert properties["ScheduleExpressionTimezone"] == {"Ref": "ScheduleTimezone"}
    assert properties["State"] == {"Fn::If": ["IsScheduleEnabled", "ENABLED", "DISABLED"]}
    assert properties["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = properties["Target"]
    # The collector itself, or the dispatcher in fan-out mode (tested with the modes below).
    assert target["Arn"] == {
        "Fn::If": ["IsFanOut", {"Fn::GetAtt": ["DispatcherFunction", "Arn"]}, {"Fn::GetAtt": [FUNCTION_ID, "Arn"]}]
    }
    assert target["RoleArn"] == {"Fn::GetAtt": [SCHEDULER_ROLE_ID, "Arn"]}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 600}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [QUEUE_ID, "Arn"]}}


def test_scheduler_role_may_only_invoke_the_function_and_dead_letter(resources: dict[str, Any]) -> None:
    role = resources[SCHEDULER_ROLE_ID]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert "ManagedPolicyArns" not in role
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    assert sorted((_actions(s)[0], json.dumps(s["Resource"])) for s in statements) == [
        (
            "lambda:InvokeFunction",
            json.dumps(
                {
                    "Fn::If": [
                        "IsFanOut",
                        {"Fn::GetAtt": ["DispatcherFunction", "Arn"]},
                        {"Fn::GetAtt": [FUNCTION_ID, "Arn"]},
                    ]
                }
            ),
        ),
        ("sqs:SendMessage", json.dumps({"Fn::GetAtt": [QUEUE_ID, "Arn"]})),
    ]
    assert all(len(_actions(s)) == 1 for s in statements)


def test_scheduler_delivers_the_scheduled_event_shape_the_function_accepts(resources: dict[str, Any]) -> None:
    events = pytest.importorskip("auto_collector.events", reason="handler package not importable")
    delivered = _scheduler_delivery(resources, "2026-12-01T04:05:00Z", "d32c5kddcf5bb8c3", 1)
    assert set(delivered) == set(json.loads((REPO / "events" / "scheduled.json").read_text()))
    invocation = events.parse_event(delivered)
    assert invocation.trigger == "schedule" and not invocation.dry_run
    assert (invocation.event_id, invocation.scheduled_time) == ("2026-12-01T04:05:00Z", "2026-12-01T04:05:00Z")
    assert delivered["resources"] == [
        "arn:aws:scheduler:eu-west-1:123456789012:schedule/default/collector-CollectionSchedule-1A2B3C"
    ]


def test_every_attempt_at_one_tick_carries_one_id_and_every_tick_its_own(resources: dict[str, Any]) -> None:
    """AWS documents the execution id as assigned to "each attempted invocation" (with a separate attempt
    counter), so a retry may carry a new one: the id is the tick's scheduled time, the same for every attempt."""
    first = _scheduler_delivery(resources, "2026-12-01T04:05:00Z", "d32c5kddcf5bb8c3", 1)
    retried = _scheduler_delivery(resources, "2026-12-01T04:05:00Z", "a91f00c2be7d4e15", 2)
    next_tick = _scheduler_delivery(resources, "2026-12-01T04:10:00Z", "0b7e6c1d2f3a4b5c", 1)
    assert first == retried
    assert first["id"] != next_tick["id"]
    assert SCHEDULED_TIME in resources[SCHEDULE_ID]["Properties"]["Target"]["Input"]["Fn::Sub"]


def test_a_repeated_scheduler_delivery_is_refused_by_the_function(resources: dict[str, Any], deployment: Any) -> None:
    """Duplicate-delivery safety end to end: the function (moto's server, the exchange emulator) collects once
    per tick, however many times EventBridge Scheduler or Lambda's asynchronous queue delivers it."""
    first = deployment.invoke(_scheduler_delivery(resources, "2026-12-01T04:05:00Z", "d32c5kddcf5bb8c3", 1))
    again = deployment.invoke(_scheduler_delivery(resources, "2026-12-01T04:05:00Z", "a91f00c2be7d4e15", 2))
    next_tick = deployment.invoke(_scheduler_delivery(resources, "2026-12-01T04:10:00Z", "0b7e6c1d2f3a4b5c", 1))
    assert (first["status"], again["status"], next_tick["status"]) == ("collected", "duplicate", "collected")
    accepted = [r for r in deployment.exchange.requests(AUTO_COLLECTION_PATH) if r.status == 200]
    assert len(accepted) == 2


def test_no_lambda_retries_and_failures_go_to_an_encrypted_queue(
    function: dict[str, Any], resources: dict[str, Any], role_statements: list[dict[str, Any]]
) -> None:
    config = function["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 0
    assert 60 <= config["MaximumEventAgeInSeconds"] <= 3600
    on_failure = config["DestinationConfig"]["OnFailure"]
    assert on_failure == {"Type": "SQS", "Destination": {"Fn::GetAtt": [QUEUE_ID, "Arn"]}}
    queue = resources[QUEUE_ID]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    senders = [s for s in role_statements if "sqs:SendMessage" in _actions(s)]
    assert [s["Resource"] for s in senders] == [{"Fn::GetAtt": [QUEUE_ID, "Arn"]}]


# ---------------------------------------------------------------------------------------------- table


def test_table_shape_and_protection(resources: dict[str, Any]) -> None:
    table = resources[TABLE_ID]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert sorted(properties["AttributeDefinitions"], key=lambda d: d["AttributeName"]) == [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert properties["SSESpecification"]["SSEEnabled"] is True
    assert "GlobalSecondaryIndexes" not in properties


# ---------------------------------------------------------------------------------------------- IAM


VPC_ACCESS_POLICY = {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"}
EXISTING_VPC = {
    "VpcSubnetIds": "subnet-0aaa1111bbbb2222c,subnet-0ddd3333eeee4444f",
    "VpcSecurityGroupIds": "sg-0123456789abcdef0",
}


def test_egress_mode_parameter(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["EgressMode"]
    assert parameter["AllowedValues"] == ["Shared", "StaticIp", "ExistingVpc"]
    assert parameter["Default"] == "Shared", "the default deployment stays what it was: no VPC, no NAT"
    assert template["Parameters"]["VpcSubnetIds"]["Default"] == ""
    assert template["Parameters"]["VpcSecurityGroupIds"]["Default"] == ""


def test_shared_egress_creates_no_network(template: dict[str, Any]) -> None:
    deployed = _deploy(template)
    assert deployed.types("AWS::EC2::") == []
    function = deployed.resources[FUNCTION_ID]["Properties"]
    assert "VpcConfig" not in function
    assert VPC_ACCESS_POLICY not in deployed.resources[ROLE_ID]["Properties"]["ManagedPolicyArns"]
    assert "EgressIp" not in deployed.outputs


def test_existing_vpc_egress_uses_the_given_subnets_and_creates_no_network(template: dict[str, Any]) -> None:
    deployed = _deploy(template, EgressMode="ExistingVpc", **EXISTING_VPC)
    assert deployed.types("AWS::EC2::") == []
    assert deployed.conditions["IsEgressExistingVpc"] and not deployed.conditions["IsEgressStaticIp"]
    assert deployed.resources[FUNCTION_ID]["Properties"]["VpcConfig"] == {
        "SubnetIds": {"Ref": "VpcSubnetIds"},
        "SecurityGroupIds": {"Ref": "VpcSecurityGroupIds"},
    }
    assert VPC_ACCESS_POLICY in deployed.resources[ROLE_ID]["Properties"]["ManagedPolicyArns"]
    assert "EgressIp" not in deployed.outputs


def test_static_ip_egress_creates_what_the_function_needs_and_nothing_more(template: dict[str, Any]) -> None:
    deployed = _deploy(template, EgressMode="StaticIp")
    # One NAT gateway with one Elastic IP; no interface endpoint (Secrets Manager goes through the NAT, which
    # costs less than an endpoint's hourly charge); no NAT instance, no flow logs, nothing else.
    assert deployed.types("AWS::EC2::") == sorted(
        ["AWS::EC2::VPC", "AWS::EC2::InternetGateway", "AWS::EC2::VPCGatewayAttachment", "AWS::EC2::EIP"]
        + ["AWS::EC2::NatGateway", "AWS::EC2::SecurityGroup", "AWS::EC2::VPCEndpoint"]
        + ["AWS::EC2::Subnet"] * 3
        + ["AWS::EC2::RouteTable"] * 2
        + ["AWS::EC2::Route"] * 2
        + ["AWS::EC2::SubnetRouteTableAssociation"] * 3
    )
    assert VPC_ACCESS_POLICY in deployed.resources[ROLE_ID]["Properties"]["ManagedPolicyArns"]
    assert deployed.outputs["EgressIp"]["Value"] == {"Fn::GetAtt": ["EgressElasticIp", "PublicIp"]}


def test_static_ip_function_runs_in_private_subnets_behind_the_one_nat(template: dict[str, Any]) -> None:
    deployed = _deploy(template, EgressMode="StaticIp")
    ((nat_id, nat),) = deployed.of_type("AWS::EC2::NatGateway").items()
    ((eip_id, eip),) = deployed.of_type("AWS::EC2::EIP").items()
    assert nat["Properties"]["AllocationId"] == {"Fn::GetAtt": [eip_id, "AllocationId"]}
    assert eip["Properties"]["Domain"] == "vpc"
    vpc_config = deployed.resources[FUNCTION_ID]["Properties"]["VpcConfig"]
    routes = {
        r["Properties"]["RouteTableId"]["Ref"]: r["Properties"] for r in deployed.of_type("AWS::EC2::Route").values()
    }
    table_of = {
        a["Properties"]["SubnetId"]["Ref"]: a["Properties"]["RouteTableId"]["Ref"]
        for a in deployed.of_type("AWS::EC2::SubnetRouteTableAssociation").values()
    }
    subnets = deployed.of_type("AWS::EC2::Subnet")
    # The function's subnets: private, in two zones, default route to the NAT gateway.
    private = [s["Ref"] for s in vpc_config["SubnetIds"]]
    assert len(private) == 2
    assert {json.dumps(subnets[s]["Properties"]["AvailabilityZone"]) for s in private} == {
        json.dumps({"Fn::Select": [0, {"Fn::GetAZs": ""}]}),
        json.dumps({"Fn::Select": [1, {"Fn::GetAZs": ""}]}),
    }
    for subnet in private:
        assert subnets[subnet]["Properties"]["MapPublicIpOnLaunch"] is False
        route = routes[table_of[subnet]]
        assert (route["DestinationCidrBlock"], route["NatGatewayId"]) == ("0.0.0.0/0", {"Ref": nat_id})
    # The NAT gateway's subnet is the only one routed to the internet gateway.
    public = nat["Properties"]["SubnetId"]["Ref"]
    assert public not in private and set(subnets) == {public, *private}
    public_route = routes[table_of[public]]
    (igw_id,) = deployed.of_type("AWS::EC2::InternetGateway")
    assert (public_route["DestinationCidrBlock"], public_route["GatewayId"]) == ("0.0.0.0/0", {"Ref": igw_id})
    assert subnets[public]["Properties"]["MapPublicIpOnLaunch"] is False


def test_static_ip_security_group_lets_out_https_only(template: dict[str, Any]) -> None:
    deployed = _deploy(template, EgressMode="StaticIp")
    (group_id, group) = next(iter(deployed.of_type("AWS::EC2::SecurityGroup").items()))
    assert deployed.resources[FUNCTION_ID]["Properties"]["VpcConfig"]["SecurityGroupIds"] == [{"Ref": group_id}]
    properties = group["Properties"]
    assert "SecurityGroupIngress" not in properties
    assert [{k: v for k, v in rule.items() if k != "Description"} for rule in properties["SecurityGroupEgress"]] == [
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "0.0.0.0/0"}
    ]
    assert not deployed.of_type("AWS::EC2::SecurityGroupIngress")
    assert not deployed.of_type("AWS::EC2::SecurityGroupEgress")


def test_static_ip_dynamodb_goes_through_a_gateway_endpoint_scoped_to_the_table(template: dict[str, Any]) -> None:
    deployed = _deploy(template, EgressMode="StaticIp")
    (endpoint,) = deployed.of_type("AWS::EC2::VPCEndpoint").values()
    properties = endpoint["Properties"]
    assert properties["VpcEndpointType"] == "Gateway"  # free; an Interface endpoint is billed by the hour
    assert properties["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.dynamodb"}
    private_tables = {
        json.dumps(r["Properties"]["RouteTableId"])
        for r in deployed.of_type("AWS::EC2::Route").values()
        if "NatGatewayId" in r["Properties"]
    }
    assert {json.dumps(table) for table in properties["RouteTableIds"]} == private_tables
    (statement,) = properties["PolicyDocument"]["Statement"]
    assert sorted(_actions(statement)) == [
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]
    assert statement["Resource"] == {"Fn::GetAtt": [TABLE_ID, "Arn"]}


def test_static_ip_schedule_waits_for_the_network_path(template: dict[str, Any]) -> None:
    """A tick before the NAT route exists would fail: the schedule depends on it (conditionally, via a handle)."""
    deployed = _deploy(template, EgressMode="StaticIp")
    schedule = deployed.resources[SCHEDULE_ID]
    handle = deployed.resources[schedule["DependsOn"]]
    assert handle["Type"] == "AWS::CloudFormation::WaitConditionHandle"
    waited = {value["Ref"] for value in handle["Metadata"].values()}
    nat_routes = {n for n, r in deployed.of_type("AWS::EC2::Route").items() if "NatGatewayId" in r["Properties"]}
    associations = set(deployed.of_type("AWS::EC2::SubnetRouteTableAssociation"))
    private_associations = {
        n
        for n in associations
        if deployed.resources[n]["Properties"]["RouteTableId"]["Ref"] != "EgressPublicRouteTable"
    }
    assert waited == nat_routes | private_associations | set(deployed.of_type("AWS::EC2::VPCEndpoint"))
    shared = _deploy(template)
    assert set(shared.resources[schedule["DependsOn"]]["Metadata"].values()) == {""}


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        ({}, False),
        ({"EgressMode": "StaticIp"}, False),
        ({"EgressMode": "ExistingVpc", **EXISTING_VPC}, False),
        # A stack from before EgressMode existed, updated with its subnets and the default mode: refused, not
        # silently moved off its whitelisted address.
        (EXISTING_VPC, True),
        ({"EgressMode": "StaticIp", **EXISTING_VPC}, True),
        ({"EgressMode": "ExistingVpc"}, True),
        ({"EgressMode": "ExistingVpc", "VpcSubnetIds": EXISTING_VPC["VpcSubnetIds"]}, True),
    ],
)
def test_rules_refuse_vpc_parameters_that_do_not_match_the_mode(
    template: dict[str, Any], overrides: dict[str, str], refused: bool
) -> None:
    assert bool(_failed_rules(template, **overrides)) is refused


def test_role_is_assumable_by_lambda_only(resources: dict[str, Any]) -> None:
    trust = resources[ROLE_ID]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]


def test_role_has_no_wildcards(role_statements: list[dict[str, Any]]) -> None:
    for statement in role_statements:
        assert statement["Effect"] == "Allow"
        for action in _actions(statement):
            assert "*" not in action, statement
        for resource in _resources(statement):
            assert resource != "*", statement
            for text in _strings(resource):
                # Only Secrets Manager's 6-character suffix (-??????) may be a pattern, and the name prefix
                # shared by the secrets of several accounts (checked in the secret test below).
                if statement.get("Sid") != "ReadApiKeySecret":
                    assert "*" not in text, statement


def test_dynamodb_access_is_exactly_four_item_actions_on_the_table(role_statements: list[dict[str, Any]]) -> None:
    dynamodb = [s for s in role_statements if any(a.startswith("dynamodb:") for a in _actions(s))]
    assert len(dynamodb) == 1
    (statement,) = dynamodb
    assert sorted(_actions(statement)) == [
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]
    assert _resources(statement) == [{"Fn::GetAtt": [TABLE_ID, "Arn"]}]
    assert "Condition" not in statement


def test_secret_access_is_get_secret_value_on_the_one_secret(
    template: dict[str, Any], role_statements: list[dict[str, Any]]
) -> None:
    secrets = [s for s in role_statements if any(a.startswith("secretsmanager:") for a in _actions(s))]
    assert len(secrets) == 1
    (statement,) = secrets
    assert _actions(statement) == ["secretsmanager:GetSecretValue"]
    accounts_condition, by_prefix, one_secret = statement["Resource"]["Fn::If"]
    assert accounts_condition == "HasAccounts"
    # Several accounts: their secrets share the name prefix given as SecretId - that prefix and nothing wider.
    assert by_prefix == {
        "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretId}*"
    }
    condition, as_arn, as_name = one_secret["Fn::If"]
    assert condition == "IsSecretArn"
    assert as_arn == {"Ref": "SecretId"}
    assert as_name == {
        "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretId}-??????"
    }
    assert template["Conditions"]["IsSecretArn"] == {
        "Fn::Equals": [{"Fn::Select": [0, {"Fn::Split": [":", {"Ref": "SecretId"}]}]}, "arn"]
    }


def test_optional_secret_key_decrypt_is_scoped_to_secrets_manager(resources: dict[str, Any]) -> None:
    conditional = [p["Fn::If"] for p in resources[ROLE_ID]["Properties"]["Policies"] if "Fn::If" in p]
    assert len(conditional) == 1
    condition, policy, otherwise = conditional[0]
    assert condition == "HasSecretKmsKey"
    assert otherwise == {"Ref": "AWS::NoValue"}
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert _actions(statement) == ["kms:Decrypt"]
    assert statement["Resource"] == {"Ref": "SecretKmsKeyArn"}
    assert statement["Condition"]["StringEquals"]["kms:ViaService"] == {
        "Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"
    }


def test_logs_are_written_only_to_the_function_log_group(role_statements: list[dict[str, Any]]) -> None:
    logs = [s for s in role_statements if any(a.startswith("logs:") for a in _actions(s))]
    assert len(logs) == 1
    assert sorted(_actions(logs[0])) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert logs[0]["Resource"] == {"Fn::GetAtt": [LOG_GROUP_ID, "Arn"]}


def test_only_known_services_in_the_role(role_statements: list[dict[str, Any]]) -> None:
    services = {a.split(":")[0] for s in role_statements for a in _actions(s)}
    assert services == {"logs", "secretsmanager", "dynamodb", "sqs", "kms"}


# ---------------------------------------------------------------------------------------------- monitoring


def test_topic_is_encrypted_with_a_rotating_key_cloudwatch_may_use(resources: dict[str, Any]) -> None:
    topic = resources[TOPIC_ID]
    assert topic["Type"] == "AWS::SNS::Topic"
    assert topic["Properties"]["KmsMasterKeyId"] == {"Ref": KEY_ID}
    key = resources[KEY_ID]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert len(cloudwatch) == 1
    assert set(_actions(cloudwatch[0])) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    for statement in statements:
        assert statement["Principal"] != "*" and statement["Principal"] != {"AWS": "*"}


def test_email_subscription_is_optional(template: dict[str, Any], resources: dict[str, Any]) -> None:
    subscriptions = [r for r in resources.values() if r["Type"] == "AWS::SNS::Subscription"]
    assert len(subscriptions) == 1
    (subscription,) = subscriptions
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["TopicArn"] == {"Ref": TOPIC_ID}
    assert template["Conditions"]["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}


def _alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The alarms every deployment has (the fan-out mode's own are tested with the modes)."""
    return {
        name: r["Properties"]
        for name, r in resources.items()
        if r["Type"] == "AWS::CloudWatch::Alarm" and "Condition" not in r
    }


def _single_metric_alarms(resources: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in _alarms(resources).values() if "MetricName" in a]


def _math_alarm_metrics(alarm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["Id"]: m for m in alarm.get("Metrics", [])}


COMPOSITE_ID = "CollectorNeedsAttentionAlarm"
TRADING_ALARM_ID = "TradingPermissionExpiringAlarm"


def _composite_alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::CompositeAlarm"}


@pytest.mark.parametrize(
    ("namespace", "metric", "statistic"),
    [
        ("AWS/Lambda", "Errors", "Sum"),
        # Arrivals, not depth: an unpurged queue must not hold the composite alarm in ALARM for 14 days.
        ("AWS/SQS", "NumberOfMessagesSent", "Sum"),
        (NAMESPACE, "BudgetExhausted", "Sum"),
        (NAMESPACE, "CollectionFailed", "Sum"),
        (NAMESPACE, "BackingOff", "Sum"),
    ],
)
def test_failure_alarm_exists_and_feeds_the_composite_alarm_only(
    resources: dict[str, Any], namespace: str, metric: str, statistic: str
) -> None:
    matching = [
        (name, a)
        for name, a in _alarms(resources).items()
        if (a.get("Namespace"), a.get("MetricName")) == (namespace, metric)
    ]
    assert len(matching) == 1, f"one alarm on {namespace}/{metric}"
    ((name, alarm),) = matching
    assert not {"AlarmActions", "OKActions", "InsufficientDataActions"} & set(alarm), "the composite alarm notifies"
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == (statistic, 300, 1)
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"
    dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    expected = {
        "AWS/Lambda": {"FunctionName": {"Ref": FUNCTION_ID}},
        "AWS/SQS": {"QueueName": {"Fn::GetAtt": [QUEUE_ID, "QueueName"]}},
        NAMESPACE: {"service": SERVICE},
    }[namespace]
    assert dimensions == expected
    for rule in resources[COMPOSITE_ID]["Properties"]["AlarmRule"]["Fn::If"][1:]:
        assert f'ALARM("${{{name}.Arn}}")' in rule["Fn::Sub"]


def test_no_success_alarm_spans_hours_and_is_left_out_of_the_composite_while_paused(
    resources: dict[str, Any],
) -> None:
    ((name, alarm),) = [(n, a) for n, a in _alarms(resources).items() if "succeeded" in _math_alarm_metrics(a)]
    metrics = _math_alarm_metrics(alarm)
    # Healthy runs are successful collections plus runs that found nothing to collect.
    assert metrics["healthy"]["Expression"] == "FILL(succeeded, 0) + FILL(empty, 0)"
    assert metrics["healthy"]["ReturnData"] is True
    for metric_id, metric_name in (("succeeded", "CollectionSucceeded"), ("empty", "NothingToCollect")):
        stat = metrics[metric_id]["MetricStat"]
        assert stat["Metric"]["Namespace"] == NAMESPACE and stat["Metric"]["MetricName"] == metric_name
        assert stat["Metric"]["Dimensions"] == [{"Name": "service", "Value": SERVICE}]
        assert (stat["Period"], stat["Stat"]) == (3600, "Sum")
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "LessThanThreshold"
    assert alarm["TreatMissingData"] == "breaching"
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == {"Ref": "NoSuccessAlarmHours"}
    assert not {"AlarmActions", "OKActions"} & set(alarm)
    condition, when_enabled, when_paused = resources[COMPOSITE_ID]["Properties"]["AlarmRule"]["Fn::If"]
    assert condition == "IsScheduleEnabled"
    assert f'ALARM("${{{name}.Arn}}")' in when_enabled["Fn::Sub"]
    assert name not in when_paused["Fn::Sub"], "a paused schedule succeeds at nothing: no alarm for that"


def test_one_failure_sends_one_email(resources: dict[str, Any]) -> None:
    """Every alarm of a failing collection feeds one composite alarm, the only one that notifies for them."""
    composites = _composite_alarms(resources)
    assert list(composites) == [COMPOSITE_ID]
    composite = composites[COMPOSITE_ID]
    assert composite["AlarmActions"] == [{"Ref": TOPIC_ID}]
    assert composite["ActionsEnabled"] is True
    assert "OKActions" not in composite, "one e-mail per incident"
    when_enabled = composite["AlarmRule"]["Fn::If"][1]["Fn::Sub"]
    referenced = set(re.findall(r'ALARM\("\$\{(\w+)\.Arn\}"\)', when_enabled))
    assert referenced == set(_alarms(resources)) - {TRADING_ALARM_ID}
    for rule in composite["AlarmRule"]["Fn::If"][1:]:
        assert re.fullmatch(r'ALARM\("\$\{\w+\.Arn\}"\)( OR ALARM\("\$\{\w+\.Arn\}"\))*', rule["Fn::Sub"])


def test_notifying_alarms_are_the_composite_and_the_trading_permission_alarm(resources: dict[str, Any]) -> None:
    notifying = {
        name
        for name, alarm in {**_alarms(resources), **_composite_alarms(resources)}.items()
        if alarm.get("AlarmActions")
    }
    assert notifying == {COMPOSITE_ID, TRADING_ALARM_ID}
    assert resources[TRADING_ALARM_ID]["Properties"]["AlarmActions"] == [{"Ref": TOPIC_ID}]


def test_trading_permission_alarm_fires_at_seven_days_or_fewer_for_any_account(resources: dict[str, Any]) -> None:
    alarm = _alarms(resources)[TRADING_ALARM_ID]
    (query,) = alarm["Metrics"]
    assert query["ReturnData"] is True and query["Period"] == 3600
    # A Metrics Insights query over the function's metric: every account of this stack (the function emits the
    # days left with the dimensions service = stack name and account), the fewest days left of any.
    expression = " ".join(query["Expression"]["Fn::Sub"].split())
    assert expression == (
        'SELECT MIN(TradingPermissionDaysLeft) FROM SCHEMA("FundAutoCollector", account, service) '
        "WHERE service = '${AWS::StackName}'"
    )
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (7, "LessThanOrEqualToThreshold")
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 1
    assert alarm["TreatMissingData"] == "notBreaching"


def _dashboard(resources: dict[str, Any]) -> dict[str, Any]:
    (dashboard,) = [r for r in resources.values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(body, str)
    placeholders = set(re.findall(r"\$\{([^}]+)\}", body))
    allowed = {"AWS::Region", "AWS::StackName", FUNCTION_ID, LOG_GROUP_ID, f"{QUEUE_ID}.QueueName"} | {
        f"{name}.Arn" for name in {**_alarms(resources), **_composite_alarms(resources)}
    }
    assert placeholders <= allowed, placeholders - allowed
    document: dict[str, Any] = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))
    return document


def test_dashboard_body_is_json_with_the_expected_widgets(resources: dict[str, Any]) -> None:
    widgets = _dashboard(resources)["widgets"]
    lines = [line for w in widgets if w["type"] == "metric" for line in w["properties"]["metrics"]]
    metric_lines = [line for line in lines if isinstance(line[0], str)]
    metrics_shown = {(line[0], line[1]) for line in metric_lines}
    assert {(NAMESPACE, m) for m in CUSTOM_METRICS} <= metrics_shown
    assert {("AWS/Lambda", "Errors"), ("AWS/Lambda", "Duration")} <= metrics_shown
    for line in metric_lines:
        if line[0] == NAMESPACE:
            assert line[2:4] == ["service", "x"], line  # "${AWS::StackName}", substituted above
    # The days left per account: the alarm's own query, one line per account.
    queries = [line[0]["expression"] for line in lines if isinstance(line[0], dict)]
    assert queries == [
        'SELECT MIN(TradingPermissionDaysLeft) FROM SCHEMA("FundAutoCollector", account, service) '
        "WHERE service = 'x' GROUP BY account"
    ]
    alarm_widgets = [w for w in widgets if w["type"] == "alarm"]
    assert len(alarm_widgets) == 1
    shown = alarm_widgets[0]["properties"]["alarms"]
    assert len(shown) == len(_alarms(resources)) + len(_composite_alarms(resources))


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["FunctionName"]["Value"] == {"Ref": FUNCTION_ID}
    assert outputs["FunctionArn"]["Value"] == {"Fn::GetAtt": [FUNCTION_ID, "Arn"]}
    assert outputs["TableName"]["Value"] == {"Ref": TABLE_ID}
    assert outputs["AlarmTopicArn"]["Value"] == {"Ref": TOPIC_ID}
    assert outputs["FailureQueueUrl"]["Value"] == {"Ref": QUEUE_ID}
    assert "#dashboards" in outputs["DashboardUrl"]["Value"]["Fn::Sub"]


def test_checkov_skips_carry_reasons(resources: dict[str, Any]) -> None:
    for name, resource in resources.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), name
            assert len(skip.get("comment", "")) > 40, f"{name} {skip['id']} needs a real reason"


# ---------------------------------------------------------------------------------------------- events, env.json


def test_scheduled_event_is_what_an_eventbridge_rule_delivers() -> None:
    event = json.loads((REPO / "events" / "scheduled.json").read_text())
    assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
    assert event["version"] == "0"
    assert event["source"] == "aws.events"
    assert event["detail-type"] == "Scheduled Event"
    assert event["detail"] == {}
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", event["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"])
    (rule,) = event["resources"]
    assert rule.startswith(f"arn:aws:events:{event['region']}:{event['account']}:rule/")


def test_console_events() -> None:
    assert json.loads((REPO / "events" / "console-test.json").read_text()) == {}
    assert json.loads((REPO / "events" / "dry-run.json").read_text()) == {"dryRun": True}


def test_event_files_are_accepted_by_the_function() -> None:
    events = pytest.importorskip("auto_collector.events", reason="handler package not importable")
    parsed = {p.name: events.parse_event(json.loads(p.read_text())) for p in (REPO / "events").glob("*.json")}
    assert parsed["scheduled.json"].trigger == "schedule"
    assert parsed["scheduled.json"].event_id is not None
    assert parsed["console-test.json"].dry_run is False
    assert parsed["dry-run.json"].dry_run is True


def test_env_json_overrides_only_declared_variables(function: dict[str, Any]) -> None:
    """`sam local invoke --env-vars` silently ignores variables the template does not declare."""
    env = json.loads((REPO / "env.json").read_text())
    assert set(env) == {FUNCTION_ID}
    overrides = env[FUNCTION_ID]
    declared = set(function["Environment"]["Variables"])
    assert set(overrides) <= declared, set(overrides) - declared
    assert {"SECRET_ID", "TABLE_NAME", "BINANCE_BASE_URL"} <= set(overrides)
    assert all(isinstance(v, str) for v in overrides.values())
    assert overrides["BINANCE_BASE_URL"].startswith("http://host.docker.internal:")


# ---------------------------------------------------------------------------------------------- sam build


#: Unzipped, bytecode included (issue 12). About 11 MiB now: without boto3/botocore (the runtime's), without
#: cryptography (13.5 MB for arm64 alone; PyNaCl signs Ed25519), and with only the Powertools modules the function
#: can reach (handler/prune_unreachable.py).
ARTIFACT_LIMIT_MB = 12
_IMPORT_CHECK = textwrap.dedent(
    """
    import json, os, sys
    roots = json.loads(sys.argv[1])
    sys.path[:0] = roots
    os.environ.update(AWS_DEFAULT_REGION="eu-west-1", POWERTOOLS_TRACE_DISABLED="true",
                      POWERTOOLS_SERVICE_NAME="fund-auto-collector", POWERTOOLS_METRICS_NAMESPACE="FundAutoCollector")
    import auto_collector.handler as handler
    assert callable(handler.lambda_handler), "lambda_handler is not callable"
    stdlib = os.path.dirname(os.__file__)
    strays = sorted(
        f"{name}: {module.__file__}" for name, module in list(sys.modules.items())
        if getattr(module, "__file__", None)
        and not module.__file__.startswith(stdlib)
        and not any(module.__file__.startswith(root) for root in roots)
    )
    assert not strays, strays
    print(handler.__file__)
    """
)


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=False, env=env, cwd=cwd, capture_output=True, text=True)


def _python312(env: dict[str, str]) -> str:
    """The real python3.12 executable (not a pyenv shim, which needs the caller's environment)."""
    found = shutil.which("python3.12", path=env.get("PATH"))
    if found is None:
        pytest.skip("python3.12 is not on PATH")
    probe = _run([found, "-c", "import sys; print(sys.executable)"], env, REPO)
    if probe.returncode != 0:
        pytest.skip(f"python3.12 does not run here: {probe.stderr.strip()}")
    return probe.stdout.strip()


_INVOKE = textwrap.dedent(
    """
    import json, sys, uuid
    sys.path[:0] = json.loads(sys.argv[1])
    from auto_collector.handler import lambda_handler

    class Context:
        aws_request_id = str(uuid.uuid4())
        function_name = "CollectorFunction"
        memory_limit_in_mb = 256
        invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:CollectorFunction"

        def get_remaining_time_in_millis(self):
            return 30_000

    print("RESULT " + json.dumps(lambda_handler(json.loads(sys.argv[2]), Context())))
    origins = {name: sys.modules[name].__file__ for name in ("botocore", "aws_xray_sdk") if name in sys.modules}
    print("ORIGINS " + json.dumps(origins))
    """
)


@dataclass(frozen=True)
class BuiltArtifact:
    python: str
    path: Path
    roots: list[str]  # sys.path for a fresh interpreter: the artifact, plus host-native wheels off arm64


@pytest.fixture(scope="module")
def built_artifact(tmp_path_factory: pytest.TempPathFactory) -> BuiltArtifact:
    """`sam build` (scripts/sam-build.sh), once for this module."""
    if os.environ.get("RUN_SAM_BUILD") != "1":
        pytest.skip("set RUN_SAM_BUILD=1 to run sam build")
    tmp_path = tmp_path_factory.mktemp("artifact")
    env = {**os.environ, "PYENV_VERSION": os.environ.get("PYENV_VERSION", "3.11.7:3.12.1:3.13.0")}
    build = _run(["bash", str(REPO / "scripts" / "sam-build.sh")], env, REPO)
    assert build.returncode == 0, build.stdout + build.stderr
    artifact = REPO / ".aws-sam" / "build" / FUNCTION_ID
    python = _python312(env)
    roots = []
    # The artifact's compiled extensions are for arm64 Linux. On another machine, the same versions for
    # this machine shadow them, so that everything else is exercised from the artifact itself.
    native = native_distributions(artifact)
    if platform.machine() not in ("aarch64", "arm64") and native:
        shim = tmp_path / "host-native"
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
        install = _run([*pip, "--only-binary=:all:", "--target", str(shim), *native], env, tmp_path)
        assert install.returncode == 0, install.stdout + install.stderr
        roots.append(str(shim))
    roots.append(str(artifact))
    # Lambda's Python runtime provides boto3 and botocore after the function's code (/var/runtime): the
    # locked runtime SDK (lambda-runtime.lock), installed apart from the artifact.
    roots.append(str(lambda_runtime_sdk(python, REPO / ".cache")))
    return BuiltArtifact(python, artifact, roots)


@pytest.mark.slow
def test_sam_build_artifact_leaves_the_sdk_to_the_runtime_and_stays_small(built_artifact: BuiltArtifact) -> None:
    artifact = built_artifact.path
    assert runtime_only_entries(artifact) == [], "the Lambda runtime provides these"
    assert (artifact / "aws_xray_sdk").is_dir(), "tracing (TracingEnabled) needs aws-xray-sdk in the artifact"
    assert not list(artifact.glob("cryptography*")), "the function signs with PyNaCl and plain Python"
    assert not list(artifact.glob("pycparser*")), "cffi's C parser is for building bindings, not running them"
    assert not (artifact / "aws_lambda_powertools" / "event_handler").exists(), "pruned: the function never uses it"
    assert size_bytes(artifact) <= ARTIFACT_LIMIT_MB * 1024 * 1024, f"{size_bytes(artifact) / 1048576:.1f} MB"
    # Still compiled for the runtime's Python: third-party modules as well as the function's own.
    assert any((artifact / "aws_lambda_powertools" / "__pycache__").glob("*.cpython-312.pyc"))


@pytest.mark.slow
def test_sam_build_artifact_imports_the_handler(built_artifact: BuiltArtifact, tmp_path: Path) -> None:
    artifact = built_artifact.path
    assert (artifact / "auto_collector" / "handler.py").is_file()
    for unwanted in ("tests", "bench", "localdev", ".venv", "events", "template.yaml"):
        assert not (artifact / unwanted).exists(), unwanted
    clean_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    command = [built_artifact.python, "-I", "-S", "-c", _IMPORT_CHECK, json.dumps(built_artifact.roots)]
    result = _run(command, clean_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(artifact)), result.stdout


_IMPORT_EVERY_MODULE = textwrap.dedent(
    """
    import importlib, json, os, pkgutil, sys
    sys.path[:0] = json.loads(sys.argv[1])
    os.environ.update(AWS_DEFAULT_REGION="eu-west-1", POWERTOOLS_TRACE_DISABLED="true")
    import aws_lambda_powertools
    names = [m.name for m in pkgutil.walk_packages(aws_lambda_powertools.__path__, "aws_lambda_powertools.")]
    for name in names:
        importlib.import_module(name)
    print(json.dumps(names))
    """
)


@pytest.mark.slow
def test_every_powertools_module_the_artifact_keeps_imports_from_it(
    built_artifact: BuiltArtifact, tmp_path: Path
) -> None:
    """The build keeps only the Powertools modules the function can reach; none of those may need one it removed.
    (The handler tests below run the paths themselves, tracing included.)"""
    clean_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    command = [built_artifact.python, "-I", "-S", "-c", _IMPORT_EVERY_MODULE, json.dumps(built_artifact.roots)]
    result = _run(command, clean_env, tmp_path)
    assert result.returncode == 0, result.stderr
    names = set(json.loads(result.stdout))
    assert {
        "aws_lambda_powertools.logging.logger",
        "aws_lambda_powertools.metrics.metrics",
        "aws_lambda_powertools.tracing.tracer",
        "aws_lambda_powertools.utilities.parameters.secrets",
    } <= names
    assert len(names) < 80, f"{len(names)} modules: pruning kept far more than the function reaches"


@pytest.mark.slow
@pytest.mark.parametrize("event_file", ["console-test.json", "scheduled.json", "dry-run.json"])
def test_the_built_artifact_collects_against_the_local_emulators(
    built_artifact: BuiltArtifact, deployment: Any, tmp_path: Path, event_file: str
) -> None:
    """The packaged function, alone in a fresh interpreter, runs the real job: moto's server, the emulator."""
    event = (REPO / "events" / event_file).read_text()
    summary, origins = _invoke_built(built_artifact, tmp_path, event, {})
    expected = "dry_run" if event_file == "dry-run.json" else "collected"
    assert summary["status"] == expected
    accepted = [r for r in deployment.exchange.requests(AUTO_COLLECTION_PATH) if r.status == 200]
    assert len(accepted) == (0 if expected == "dry_run" else 1)
    (record,) = deployment.outcomes()
    assert record["status"] == expected
    assert origins["botocore"].startswith(built_artifact.roots[-1]), "botocore must be the runtime's"
    assert "aws_xray_sdk" not in origins, "tracing is off: aws_xray_sdk is not even imported"


@pytest.mark.slow
def test_the_built_artifact_traces_with_the_runtimes_botocore(
    built_artifact: BuiltArtifact, deployment: Any, tmp_path: Path
) -> None:
    """TracingEnabled=true: the packaged aws-xray-sdk (installed without botocore) patches the runtime's botocore
    and requests, and sends the subsegments to the X-Ray daemon's UDP address (here a socket of this test)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon:
        daemon.bind(("127.0.0.1", 0))
        daemon.settimeout(0.2)
        tracing = {
            "POWERTOOLS_TRACE_DISABLED": "false",
            # What Lambda sets, and what Powertools and the X-Ray SDK read to know they run in Lambda.
            "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_ID,
            "LAMBDA_TASK_ROOT": str(built_artifact.path),
            "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon.getsockname()[1]}",
        }
        event = (REPO / "events" / "scheduled.json").read_text()
        summary, origins = _invoke_built(built_artifact, tmp_path, event, tracing)
        datagrams = []
        while True:
            try:
                datagrams.append(daemon.recv(65536).decode())
            except TimeoutError:
                break
    assert summary["status"] == "collected"
    assert origins["aws_xray_sdk"].startswith(str(built_artifact.path))
    assert origins["botocore"].startswith(built_artifact.roots[-1])
    documents = [json.loads(d.split("\n", 1)[1]) for d in datagrams]
    names = {sub["name"] for doc in documents for sub in [doc, *doc.get("subsegments", [])]}
    # The AWS calls, traced through the runtime's botocore, and the exchange request, through requests.
    assert {"## lambda_handler", "dynamodb", "secretsmanager", "127.0.0.1"} <= names, names
    (record,) = deployment.outcomes()
    assert record["status"] == "collected"


def _invoke_built(
    built: BuiltArtifact, tmp_path: Path, event: str, extra_env: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """One event through the built handler in a fresh `python3.12 -I -S`: its summary and where botocore and
    aws_xray_sdk (if imported) were loaded from."""
    passed = (
        "SECRET_ID",
        "TABLE_NAME",
        "BINANCE_BASE_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "POWERTOOLS_TRACE_DISABLED",
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", **{k: os.environ[k] for k in passed}}
    env.update(extra_env)
    command = [built.python, "-I", "-S", "-c", _INVOKE, json.dumps(built.roots), event]
    result = _run(command, env, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    (summary,) = [json.loads(line.removeprefix("RESULT ")) for line in lines if line.startswith("RESULT ")]
    (origins,) = [json.loads(line.removeprefix("ORIGINS ")) for line in lines if line.startswith("ORIGINS ")]
    return summary, origins


# --- mode: one function, or a dispatcher fanning out on SQS (issue 9) ---------------------------------------------


def test_single_function_mode_has_no_queue_consumer_and_the_schedule_invokes_the_collector(
    template: dict[str, Any],
) -> None:
    deployed = _deploy(template)
    assert deployed.conditions["IsFanOut"] is False
    for absent in ("DispatcherFunction", "WorkQueue", "WorkDeadLetterQueue", "WorkQueueMapping", "WorkQueueAgeAlarm"):
        assert absent not in deployed.resources
    target = deployed.resources["CollectionSchedule"]["Properties"]["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["CollectorFunction", "Arn"]}


def test_fan_out_mode_dispatches_on_the_schedule_and_consumes_the_queue_with_bounded_concurrency(
    template: dict[str, Any],
) -> None:
    deployed = _deploy(template, Mode="FanOut", FanOutMaxConcurrency="3")
    target = deployed.resources["CollectionSchedule"]["Properties"]["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["DispatcherFunction", "Arn"]}
    dispatcher = deployed.resources["DispatcherFunction"]["Properties"]
    assert dispatcher["Handler"] == "auto_collector.dispatcher.lambda_handler"
    assert dispatcher["Environment"]["Variables"]["QUEUE_URL"] == {"Ref": "WorkQueue"}
    mapping = deployed.resources["WorkQueueMapping"]["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    assert mapping["FunctionName"] == {"Ref": "CollectorFunction"}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "FanOutMaxConcurrency"}}
    queue = deployed.resources["WorkQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["WorkDeadLetterQueue", "Arn"]}
    assert queue["VisibilityTimeout"] > 60  # longer than the collector's timeout
    age = deployed.resources["WorkQueueAgeAlarm"]["Properties"]
    assert (age["Namespace"], age["MetricName"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    # The collector may consume exactly its own queue; the dispatcher may only read windows and send work.
    collector_statements = deployed.resources[ROLE_ID]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (consume,) = [st for st in collector_statements if st["Sid"] == "ConsumeWorkQueue"]
    assert consume["Resource"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    # A deferred message is handed back with its visibility set to when IP weight frees, on this queue.
    assert "sqs:ChangeMessageVisibility" in consume["Action"]
    collector = deployed.resources[FUNCTION_ID]["Properties"]["Environment"]["Variables"]
    assert collector["QUEUE_URL"] == {"Ref": "WorkQueue"}
    dispatcher_statements = deployed.resources["DispatcherRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    actions = sorted(str(st["Action"]) for st in dispatcher_statements["Statement"])
    assert actions == sorted(
        [
            "['logs:CreateLogStream', 'logs:PutLogEvents']",
            "['dynamodb:BatchGetItem', 'dynamodb:GetItem']",
            "['sqs:SendMessage', 'sqs:GetQueueAttributes']",
            "sqs:SendMessage",
        ]
    )


def test_ip_weight_parameters_reach_the_collector(template: dict[str, Any], function: dict[str, Any]) -> None:
    weight = template["Parameters"]["IpWeightPerMinute"]
    assert (weight["Default"], weight["MinValue"], weight["MaxValue"]) == (12000, 1500, 12000)
    variables = function["Environment"]["Variables"]
    assert variables["IP_WEIGHT_PER_MINUTE"] == {"Ref": "IpWeightPerMinute"}
    assert variables["IP_WEIGHT_MAX_WAIT_SECONDS"] == {"Ref": "IpWeightMaxWaitSeconds"}
    assert template["Parameters"]["RecvWindowMs"]["Default"] == 5000


def test_fan_out_alarms_watch_the_backlog_and_the_dead_letters_and_notify_on_their_own(
    template: dict[str, Any],
) -> None:
    deployed = _deploy(template, Mode="FanOut")
    for name, metric, queue in (
        ("WorkQueueAgeAlarm", "ApproximateAgeOfOldestMessage", "WorkQueue"),
        ("WorkDeadLetterAlarm", "ApproximateNumberOfMessagesVisible", "WorkDeadLetterQueue"),
    ):
        alarm = deployed.resources[name]["Properties"]
        assert alarm["MetricName"] == metric
        assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
        # A backlog lasts: inside the composite alarm it would hold it in ALARM and mute every new failure.
        assert alarm["AlarmActions"] == [{"Ref": TOPIC_ID}]
