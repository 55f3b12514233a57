{{/*
The chart's name, or nameOverride.
*/}}
{{- define "zoho-token-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of the release's objects: fullnameOverride, else "<release>-<chart>", shortened to the
release name when that already contains the chart's name. Kubernetes names stop at 63 characters.
*/}}
{{- define "zoho-token-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "zoho-token-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object the chart renders.
*/}}
{{- define "zoho-token-operator.labels" -}}
helm.sh/chart: {{ include "zoho-token-operator.chart" . }}
{{ include "zoho-token-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The labels that select the operator's pods. They must never change across upgrades: a Deployment's
selector is immutable.
*/}}
{{- define "zoho-token-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zoho-token-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "zoho-token-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zoho-token-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "zoho-token-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
"true" when the replicas elect a leader: on request, and always with more than one replica, since
two operators minting for the same credentials would spend Zoho's quota twice.
*/}}
{{- define "zoho-token-operator.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{- define "zoho-token-operator.leaseName" -}}
{{- default (include "zoho-token-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The Lease the operator holds: with several shards, each shard names its own after the one it is
given, so that the shards' leaders do not exclude one another.
*/}}
{{- define "zoho-token-operator.heldLeaseName" -}}
{{- include "zoho-token-operator.leaseName" . }}
{{- if gt (int .Values.sharding.count) 1 }}-shard-{{ int .Values.sharding.index }}{{ end }}
{{- end }}

{{/*
What the operator does with the Kubernetes API, shared by the ClusterRole (all namespaces) and the
Roles (watchNamespaces). Nothing more: every rule below is used by the operator's code.
*/}}
{{- define "zoho-token-operator.rules" -}}
# list and watch feed the controller's cache. get is not called today; it reveals nothing that
# list does not, and keeps `kubectl auth can-i get` and future direct reads working. patch adds
# and removes the finalizer of revokeOnDelete.
- apiGroups: ["zoho-operator.dev"]
  resources: ["zohoconnections"]
  verbs: ["get", "list", "watch", "patch"]
# Writes status with server-side apply, which is a PATCH of the status subresource. update on
# finalizers: clusters with the OwnerReferencesPermissionEnforcement admission plugin require it to
# set blockOwnerDeletion on the target Secret's ownerReference.
- apiGroups: ["zoho-operator.dev"]
  resources: ["zohoconnections/status"]
  verbs: ["patch"]
- apiGroups: ["zoho-operator.dev"]
  resources: ["zohoconnections/finalizers"]
  verbs: ["update"]
# get: reads the credentials Secret and the target Secret. list and watch: a metadata-only watch
# notices changed credentials and edited or deleted targets. patch: server-side apply of the
# target Secret, and, with bootstrap.enabled, writing a grant code's refresh token back into the
# credentials Secret; create: the apply creates the target when it is missing. No update; delete
# only cluster-wide, for ClusterZohoConnections.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Records events on connections; repeated events are patched into a series.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
What ClusterZohoConnections need on top, granted only with the ClusterRole (all namespaces).
*/}}
{{- define "zoho-token-operator.clusterRules" -}}
- apiGroups: ["zoho-operator.dev"]
  resources: ["clusterzohoconnections"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["zoho-operator.dev"]
  resources: ["clusterzohoconnections/status"]
  verbs: ["patch"]
- apiGroups: ["zoho-operator.dev"]
  resources: ["clusterzohoconnections/finalizers"]
  verbs: ["update"]
# Which namespaces a selector matches, and when that changes.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
# Only to remove the Secret from a namespace that stops matching a ClusterZohoConnection, and
# only a Secret the operator owns: it checks the controller ownerReference and deletes with a uid
# precondition.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["delete"]
{{- end }}

{{/*
Fails on values that contradict each other; the schema checks each value on its own.
*/}}
{{- define "zoho-token-operator.validate" -}}
{{- with .Values.podDisruptionBudget }}
{{- if and .enabled (and (not (kindIs "invalid" .minAvailable)) (not (kindIs "invalid" .maxUnavailable))) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- end }}
{{- if ne (len .Values.watchNamespaces) (len (uniq .Values.watchNamespaces)) }}
{{- fail (printf "watchNamespaces lists a namespace twice: %v" .Values.watchNamespaces) }}
{{- end }}
{{- with .Values.sharding }}
{{- if ge (int .index) (int .count) }}
{{- fail (printf "sharding.index must be below sharding.count (%d), one release per index" (int .count)) }}
{{- end }}
{{- if and (gt (int .index) 0) $.Values.crds.install }}
{{- fail "sharding.index above 0: set crds.install=false; the release of shard 0 installs the CRDs, and two releases cannot own them" }}
{{- end }}
{{- end }}
{{- if and .Values.prometheus.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "prometheus.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor scrapes that Service" }}
{{- end }}
{{- end }}
