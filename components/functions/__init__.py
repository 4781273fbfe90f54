"""Code that AWS runs for the program, not the program itself.

Each module here is shipped as a Lambda function's code by a component (userdata/ holds the
code the hosts run). A module imports only the standard library, what the Lambda runtime
provides (boto3) and what its component bundles next to it, so it runs unchanged there; the
tests and the labs import it as `components.functions.<module>`.
"""
