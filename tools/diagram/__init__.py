"""Draw the architecture diagram (`docs/architecture.png`) from the Pulumi program itself.

Why: a hand-drawn diagram drifts the day someone adds a web node or moves a subnet. This one
is built from what the program registers: `tools.mocked_program.run_program` runs the real
`__main__.py` under AWS-like mocks, and `architecture_model` reads the recorded registrations
(subnets and their CIDRs and zones, the instances and the subnet each is launched in, the RDS
primary and the replica that names it as its source, the security-group rules that admit each
flow, HAProxy's frontend and backend from the load balancer's userdata) into a small typed
model. `render` then draws that model with the `diagrams` package (Graphviz `dot`).

What it draws: users on the internet; the VPC with its public and private subnets (CIDR and
availability zone); HAProxy with its Elastic IP and the NAT gateway in a public subnet; every
web node (Nginx + gunicorn) in the private subnet it is launched in; the MySQL primary and its
read replica in the RDS subnet group; the private Route 53 zone. Edges: users -> load
balancer, load balancer -> each web node, each web node -> primary (writes) and -> replica
(reads), primary -> replica (asynchronous replication).

The model is also written next to the image as sorted JSON (`docs/architecture.model.json`):
PNG bytes differ between Graphviz versions, the model does not, so the tests compare it with a
freshly built model to tell whether the committed drawing is out of date.

One concern per module: `model` (what the drawing shows, as typed data), `registrations`
(reading that model from what the program registers: changes when the program's resources
change), `drawing` (how the model looks: changes with the layout, styles or Graphviz) and
`cli` (the command, the stack it draws and the fingerprint file).

    uv run python -m tools.diagram [--web-nodes N] [--output docs/architecture.png]
"""
