"""siamese: Siamese networks that learn how similar two things are, from labeled data.

    import siamese
    model = siamese.train({"data": {"path": "photos/"}}, out="runs/faces")
    model = siamese.load("runs/faces")
    model.similarity("a.jpg", "b.jpg")      # 0.93
    model.verify("a.jpg", "b.jpg")          # (0.93, True)
    model.embed(["a.jpg", "b.jpg"])         # (2, D) numpy array
    siamese.evaluate(model, data="more_photos/")
"""

__version__ = "0.1.0"

from .api import evaluate, load, train  # noqa: E402
from .config import Config  # noqa: E402
from .model import Model  # noqa: E402
from .models import SiameseNet  # noqa: E402

__all__ = ["Config", "Model", "SiameseNet", "evaluate", "load", "train", "__version__"]
