"""pandera models of the pipeline's DataFrames (source frames and plan frames)."""
