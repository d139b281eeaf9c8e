"""The shipped adapters (``<name>/``), every adapter's recipe (``<name>.yaml``) and the cards of retired adapters
(``retired/<name>/``), documented in README.md here. The build packages this folder as the data package
``llmrec._shipped.adapters``; llmrec finds it with ``llmrec._shipped.shipped_folder("adapters")``."""
