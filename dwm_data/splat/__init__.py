"""3D Gaussian splats of a static scene: training, rendering (CUDA or CPU) and `.ply` files.

gsplat rasterises only on CUDA; on CPU we keep gsplat's own torch projection and composite with
`compositor.composite`, so one code path trains and renders on a laptop and on a GPU node.
"""
