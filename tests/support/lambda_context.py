"""The tests' Lambda context: the one `make run` uses."""

from localdev.lambda_context import LambdaContext as FakeLambdaContext

__all__ = ["FakeLambdaContext"]
