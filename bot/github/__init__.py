"""GitHub: webhooks, PR comment commands, the living PR comment and the Deployments API."""
