"""User uploads: what an upload may be (sniffed from its bytes), storing it once per
content, and which params of a workflow name assets."""
