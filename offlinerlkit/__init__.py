"""cocoa-rl: offline RL with COCOA (Compositional Conservatism with Anchor-Seeking).

Importing the package loads nothing optional (no d4rl, gym, minari, wandb, ray): each
optional dependency is imported inside the function that needs it.
"""

__version__ = "0.1.0"
