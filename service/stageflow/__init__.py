"""Stageflow: promote image tags and feature flags through GitOps stages."""
