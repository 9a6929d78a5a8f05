"""TRUMANS recordings rendered in Blender into egocentric (interaction, static, hand) triplets.

The official DWM scripts render the per-scene `.blend` files of the release (a CC4 avatar whose
motion and the objects' motion come from "animation sets"); `body="smplx"` swaps the avatar for
an SMPL-X body fitted by TRUMANS, as the paper words it. Only `builder` is imported by the run
machinery; `bpy` is imported inside the functions that need it.
"""
