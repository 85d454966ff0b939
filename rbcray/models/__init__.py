"""Networks (paper Sec. 4.2 and 5): pix2pixHD parts and the downstream models, behind a registry.

``create_model(name, **kwargs)`` builds any registered network (timm's ``create_model`` idea), so
configs name models by string and new parts plug in without touching the callers.
"""

from rbcray.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
