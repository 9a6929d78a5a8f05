"""Hands for every source: the per-frame track, estimation backends, MANO, clean-up, rendering.

The sources (TASTE-Rob clips, Aria captures, TRUMANS renders) differ in where hands come from,
but all of them end in a `HandTrack` and one of the two renderers, so the hand videos of every
source look the same to the model.
"""
