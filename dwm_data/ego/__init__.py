"""Any egocentric video -> triplets: cameras by structure from motion, a splat of the scene."""
