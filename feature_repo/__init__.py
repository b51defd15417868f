"""The Feast repository of reelrank: entities, sources, feature views and services.

Feast imports every module here (``feast apply``), so these files only declare objects.
Pipeline code builds the store from settings in :mod:`features.store`.
"""
