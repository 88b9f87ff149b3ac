"""Dress-UP: the recommender library behind the blinded fashion-recommendation study.

The library never imports ``study`` or ``gradio``: data flows catalogue -> encoder -> index -> arm.
"""
__version__ = "0.2.0"
