"""The built-in `probe` workflow: a -> b -> chord(map(c over b.items), d) -> e."""

from steps import probe
from workflows.definition import Workflow
from workflows.spec import chain, chord, map

probe_workflow = Workflow(
    name="probe",
    version=1,
    canvas=chain(probe.a, probe.b, chord([map(probe.c, over="b.items")], probe.d), probe.e),
    params_model=probe.ProbeParams,
    description="Cheap steps for smoke-testing a deployment: a -> b -> chord(map c, d) -> e.",
)
