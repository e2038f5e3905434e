"""Installation script for cocoa-rl (the `offlinerlkit` package and its run scripts)."""
from setuptools import find_packages, setup

# torch: a range the local 2.13.0 CPU wheel satisfies; an unpinned requirement pulls CUDA wheels.
INSTALL_REQUIRES = [
    "torch>=2.1,<2.14",
    "numpy>=1.24",
    "gymnasium[mujoco]>=0.29,<2",
    "mujoco>=2.3.3",
    "h5py>=3.8",
    "tqdm>=4.60",
    "tensorboard>=2.13",
]

EXTRAS = {
    # minari[create] (jax): the tests make Minari datasets with its own DataCollector.
    "test": ["pytest>=7", "ruff>=0.4", "minari[hdf5,create]>=0.5"],
    "minari": ["minari[hdf5]>=0.5"],
    # The legacy stack used to record D4RL; needs MuJoCo 2.1 binaries for mujoco-py.
    "d4rl": ["gym==0.23.1", "mujoco-py<2.2", "d4rl"],
    "wandb": ["wandb"],
    # run_example/sweep.py: the ray.tune.{report,RunConfig,FailureConfig} entry points (Ray 2.41+).
    "ray": ["ray[tune]>=2.41"],
    # run_example/plotter.py (Agg canvas; no pandas needed).
    "plot": ["matplotlib>=3.7"],
}
EXTRAS["dev"] = EXTRAS["test"] + ["mypy"]

setup(
    name="cocoa-rl",
    version="0.1.0",
    description="COCOA (Compositional Conservatism with Anchor-Seeking) on an OfflineRL-Kit-style library",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["offlinerlkit", "offlinerlkit.*"]),
    # The shipped behaviour policies (weights and provenance) of make_dataset.py --policies shipped.
    package_data={"offlinerlkit.replica": ["policies/*/*.pt", "policies/*/*.json"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
