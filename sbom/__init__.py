"""SBOM catalogers and CycloneDX output (the foundation uses Trivy's SBOM; see the SBOM issue)."""
