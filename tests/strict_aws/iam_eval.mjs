// Decides IAM authorization requests with @cloud-copilot/iam-simulate, one JSON line in, one
// out: {"policies": [...], "principal": arn, "action": "ecs:TagResource", "resource": arn,
// "context": {...}} -> {"result": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | "Error: ..."}.
import { createInterface } from 'node:readline'
import { runSimulation } from '@cloud-copilot/iam-simulate'

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  let out
  try {
    const req = JSON.parse(line)
    const simulation = {
      identityPolicies: req.policies.map((policy, i) => ({ name: `policy${i}`, policy })),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      request: {
        action: req.action,
        principal: req.principal,
        resource: { accountId: '123456789012', resource: req.resource },
        contextVariables: req.context || {}
      }
    }
    const response = await runSimulation(simulation, {})
    if (response.resultType === 'error') {
      out = { result: 'Error: ' + JSON.stringify(response.errors) }
    } else {
      out = { result: response.overallResult }
    }
  } catch (err) {
    out = { result: 'Error: ' + String(err && err.message ? err.message : err) }
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}
