"""The durable-step engine: the `@step` decorator and task base, the step spec, the
sync/async bridge, lease renewal, the retry policy, and the context a step receives.
Stages import it through `steps` (the public face), never from here directly."""
