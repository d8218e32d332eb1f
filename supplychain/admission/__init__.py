"""Kubernetes admission: the gate's decision at the cluster's door.

:mod:`.review` reads ``admission.k8s.io/v1`` AdmissionReview requests and finds every container
image of a Pod or a pod template; :mod:`.answer` writes the responses (with a base64 JSONPatch
pinning images to digests); :mod:`.controller` asks the gate about each image.
"""
