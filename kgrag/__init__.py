"""kgrag: causal-knowledge-graph-guided retrieval-augmented generation for medical images.

Importing the package is cheap: no model, torch, driver or server is loaded here.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
