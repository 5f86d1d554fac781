"""Stage 3, attribution: Bergson runs (Hessian, query, scores), pipelines, memory models, method comparison and the top-k reports."""
