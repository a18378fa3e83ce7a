"""revieee: review environments on AWS ECS for every branch, driven from chat."""
