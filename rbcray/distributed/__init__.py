"""The thin Ray adapters of rbcray, all in one place.

Every stage is a plain library usable without Ray; this package wraps those libraries as Ray
actors, Ray Data pipelines, Ray Train trainers and Ray Tune sweeps.
"""
