"""What shows the node at work: the demo, the sample camera, the demo's client, the grasp client example."""
