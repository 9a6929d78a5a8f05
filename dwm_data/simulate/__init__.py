"""A user's own digital twin acted on: the condition videos of `dwm-data simulate` and `rank`.

A scene (a Gaussian splat, a mesh or a `.blend`), a camera path and a hand motion become the
static and hand videos the world model is conditioned on, drawn by the renderers the builders
use (`dwm_data.splat`, `dwm_data.hands.render`), so a simulated clip looks to the model like a
built one. `scene.py` loads and renders scenes, `paths.py` reads camera paths, `motion.py` reads
hand motions and places them along a path, `conditions.py` puts the three together.
"""
