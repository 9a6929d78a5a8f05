"""Project Aria captures (VRS + MPS) to triplets: the static video comes from a 3D Gaussian splat
of the scene trained on the frames before the action, rendered along the interaction cameras."""
