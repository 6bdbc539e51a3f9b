"""The CDK app's domain errors, importable without starting the jsii runtime (no aws_cdk import here)."""

from __future__ import annotations

from pipeline.errors import ImgopsError


class ConfigError(ImgopsError, ValueError):
    """A context value the app cannot synthesize with."""


class SynthError(ImgopsError, RuntimeError):
    """The app did not synthesize: bad context, a construct error, or unacknowledged cdk-nag findings."""
