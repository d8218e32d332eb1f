"""The durable job queue and the workers that run the pipeline for each job."""
