"""The exception hierarchy. Every error reelflow raises on purpose derives from one root;
the classes defined beside the code that raises them are listed here with their module.

ReelflowError
├── ConfigError                 settings missing or invalid
├── SchemaBehind                database not migrated to head
├── UnknownWorkflow             no workflow of that name
├── InvalidParams               params rejected by the workflow's params model
│   ├── IdempotencyKeyReused    the Idempotency-Key was used for a different request
│   ├── FaultInjectionDisabled  faults asked for, ALLOW_FAULT_INJECTION is off
│   ├── UnknownAsset            params name an asset id no upload has
│   └── WrongAssetKind          ... an asset of the wrong kind (audio given as an image)
├── RunNotFound / StepNotFound  no such run or step
├── ArtifactNotFound            no such file of a run, or a path outside its folder
├── AssetNotFound               no uploaded asset has that id (HTTP 404)
├── UnsupportedMediaType        an upload whose bytes are no image or audio we take (HTTP 415)
├── AssetTooLarge               an upload over ASSET_MAX_BYTES (HTTP 413)
├── RunStateConflict            the run's state forbids the operation (HTTP 409)
│   └── RunBusy                 the run (or one of its steps) is still running
├── DispatchFailed              the broker did not take the messages (HTTP 503)
├── Overloaded                  too many active runs, or a client over its rate (HTTP 429)
├── ParamsTooLarge              a run's params over MAX_PARAMS_BYTES (HTTP 413)
├── StaleDelivery               a message of an earlier generation of its run
├── StepFailed                  what Celery is told of a step that failed for good, recorded
├── BrokerUnavailable           reelflow.broker: the broker is not answering (HTTP 503)
├── ArtifactMissing             reelflow.storage: no artifact under that key
├── DatabaseUnavailable         db.errors: the database is not answering (HTTP 503)
├── NotDispatchable             workflows.definition.compiler: a step no message can claim
│   └── StepsRunning            ... only because steps run right now: wait
├── MapNotReady                 workflows.definition.expander: a map that cannot expand yet
├── MapSourceInvalid            workflows.definition.expander: its source has no list there
├── RunStopped                  workflows.definition.expander: cancelled before expanding
├── CliError                    cli.app: a refusal phrased for the terminal
└── StepError                   raised by step code
    ├── TransientStepError      worth retrying (the default for unexpected errors is permanent)
    │   └── InjectedFailure     a failure asked for by the run's `faults`
    └── PermanentStepError      never retried
        └── AssetVanished       an asset the run names is gone (its row or its file)

Not errors, so not under the root: StepStopped (the run was cancelled, or the attempt lost
its lease to another) derives from BaseException so step code cannot swallow it with
`except Exception`; `cli.devstack.Stopped` unwinds `reelflow dev` into its shutdown on a
signal.

The class docstring is the default message; `code` is stable and shows in API payloads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class ReelflowError(Exception):
    """reelflow failed."""

    code = "reelflow_error"

    def __init__(self, message: str | None = None, **context: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip().splitlines()[0]
        self.context = context
        super().__init__(self.message)


class ConfigError(ReelflowError):
    """The configuration is invalid."""

    code = "config_error"


class SchemaBehind(ReelflowError):
    """The database schema is not at the latest migration; run `reelflow db upgrade`."""

    code = "schema_behind"


class UnknownWorkflow(ReelflowError):
    """No workflow has that name."""

    code = "unknown_workflow"


class InvalidParams(ReelflowError):
    """The workflow params are invalid."""

    code = "invalid_params"

    def __init__(self, message: str | None = None, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.errors = errors or []


class InvalidCursor(InvalidParams):
    """The page cursor is not one this API issued."""

    code = "invalid_cursor"


class InvalidAge(InvalidParams):
    """The age is not a number and a unit (s, m, h, d, w), such as 30d."""

    code = "invalid_age"


class IdempotencyKeyReused(InvalidParams):
    """The Idempotency-Key was already used with a different request body."""

    code = "idempotency_key_reused"


class FaultInjectionDisabled(InvalidParams):
    """Failure injection is a testing aid: set ALLOW_FAULT_INJECTION=true to use `faults`."""

    code = "fault_injection_disabled"


class UnknownAsset(InvalidParams):
    """The params name an asset id that no upload has (POST /assets first)."""

    code = "unknown_asset"


class WrongAssetKind(InvalidParams):
    """The params name an asset of the wrong kind (an audio file where an image goes)."""

    code = "wrong_asset_kind"


class RunNotFound(ReelflowError):
    """No run has that id."""

    code = "run_not_found"


class StepNotFound(ReelflowError):
    """The run has no step with that key."""

    code = "step_not_found"


class ArtifactNotFound(ReelflowError):
    """The run has no such artifact (or the path leads outside the run's folder)."""

    code = "artifact_not_found"


class AssetNotFound(ReelflowError):
    """No uploaded asset has that id."""

    code = "asset_not_found"


class UnsupportedMediaType(ReelflowError):
    """The upload is not an image or audio file of a type reelflow takes."""

    code = "unsupported_media_type"


class AssetTooLarge(ReelflowError):
    """The upload is larger than ASSET_MAX_BYTES."""

    code = "too_large"


class RunStateConflict(ReelflowError):
    """The run's state forbids this operation."""

    code = "run_state_conflict"

    def __init__(self, message: str | None = None, *, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class RunBusy(RunStateConflict):
    """The run is still running; wait for it to stop or cancel it first."""

    code = "run_busy"


class DispatchFailed(ReelflowError):
    """The broker did not accept the run's messages; the run is kept and can be resumed."""

    code = "dispatch_failed"


class Overloaded(ReelflowError):
    """Not now: too many runs are active, or this client sends too fast. Try again later."""

    code = "overloaded"

    def __init__(self, message: str | None = None, *, retry_after: int = 1, code: str = "") -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)
        if code:
            self.code = code


class ParamsTooLarge(ReelflowError):
    """The run's params are larger than MAX_PARAMS_BYTES."""

    code = "params_too_large"


class StaleDelivery(ReelflowError):
    """A message sent under an earlier generation of its run: it must change nothing."""

    code = "stale_delivery"


class StepFailed(ReelflowError):
    """The step failed for good; its attempt, the step and the run recorded it.

    What a delivery raises to Celery instead of the step's own error (`StepTask.throws`):
    Celery records the delivery as failed for monitors, in one line without a traceback
    (the traceback is on the attempt row), and the chord it sat in logs it quietly."""

    code = "step_failed"


class StepError(ReelflowError):
    """A step failed."""

    code = "step_error"


class TransientStepError(StepError):
    """A step failed in a way worth retrying."""

    code = "transient_step_error"


class InjectedFailure(TransientStepError):
    """A failure injected by the run's `faults` (only with ALLOW_FAULT_INJECTION=true)."""

    code = "injected_failure"


class PermanentStepError(StepError):
    """A step failed in a way no retry can fix."""

    code = "permanent_step_error"


class AssetVanished(PermanentStepError):
    """An asset the run names is gone (pruned, or its file deleted): no retry brings it back."""

    code = "asset_vanished"


class StepStopped(BaseException):
    """The step must stop: its run was cancelled, or its attempt lost the lease to another.

    Not an Exception: step code must not catch it."""


def field_errors(errors: Iterable[Mapping[str, Any]], *, skip: str = "") -> list[dict[str, str]]:
    """Pydantic's validation errors as [{field, message}], `skip` left out of field paths."""
    return [
        {
            "field": ".".join(str(p) for p in e.get("loc", ()) if p != skip),
            "message": str(e.get("msg", "invalid")),
        }
        for e in errors
    ]


def summarise(errors: list[dict[str, str]], *, whole: str) -> str:
    """One line naming every bad field (`whole` stands for an error about the whole)."""
    return "; ".join(f"{e['field'] or whole}: {e['message']}" for e in errors)
