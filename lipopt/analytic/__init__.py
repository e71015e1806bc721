"""Fast analytic upper bounds: norm products and the local affine-ReLU bound (torch, CPU or GPU)."""
