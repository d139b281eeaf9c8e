"""The shipped prompt templates (``*.jinja``, documented in README.md here). The build packages this folder as the
data package ``llmrec._shipped.prompts``; llmrec finds it with ``llmrec._shipped.shipped_folder("prompts")``."""
