"""Apache Beam pipelines of etagger: each module holds composite PTransforms and a run(argv)."""
