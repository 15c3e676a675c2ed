-- Argo CD health of an McpKafkaServer, from the operator's conditions.
-- Install it as the argocd-cm key resource.customizations.health.mcpkafka.dev_McpKafkaServer
-- (README, "Argo CD"). Lua 5.1, as Argo CD runs it.
local hs = {}
local function find(conditions, type_)
  for _, c in ipairs(conditions) do
    if c.type == type_ then return c end
  end
  return nil
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to reconcile"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to observe generation " .. generation
  return hs
end

local conditions = obj.status.conditions
-- Failures that need a person: the namespace's environment label, or a
-- reconcile that cannot finish (a missing Secret, an apply refused).
local failures = { {"EnvironmentFenced", "environment fence: "}, {"Reconciled", "not reconciled: "} }
for _, failure in ipairs(failures) do
  local c = find(conditions, failure[1])
  if c ~= nil and c.status == "False" then
    hs.status = "Degraded"
    hs.message = failure[2] .. (c.message or c.reason or "")
    return hs
  end
end
local ready = find(conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  local degraded = find(conditions, "Degraded")
  if degraded ~= nil and degraded.status == "True" then
    hs.status = "Degraded"
    hs.message = degraded.message or degraded.reason or "degraded"
    return hs
  end
  hs.status = "Healthy"
  hs.message = ready.message or "ready"
  return hs
end
hs.status = "Progressing"
if ready ~= nil then
  hs.message = ready.message or ready.reason or "not ready yet"
else
  hs.message = "not ready yet"
end
return hs
