{{/* Names and labels. */}}
{{- define "tilestream.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tilestream.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tilestream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tilestream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "tilestream.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tilestream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tilestream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tilestream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* registry/repository@digest, or :tag (default appVersion). Argument: dict "image" <values> "root" $ */}}
{{- define "tilestream.image" -}}
{{- $ref := .image.repository -}}
{{- if .image.registry -}}{{- $ref = printf "%s/%s" .image.registry .image.repository -}}{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $ref .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "tilestream.leaderElection" -}}
{{- $mode := toString .Values.leaderElection.mode -}}
{{- if or (eq $mode "on") (and (eq $mode "auto") (gt (int .Values.replicaCount) 1)) -}}true{{- end -}}
{{- end -}}

{{/*
The operator's permissions: exactly OPERATOR_RULES, OPERATOR_NODE_RULES and LEADER_ELECTION_RULES
of operator/rbac.ts (test/ship/helm.test.ts compares them).
*/}}
{{- define "tilestream.operatorRules" -}}
- apiGroups: ["tilestream.io"]
  resources: ["streamingtrainingjobs"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: ["tilestream.io"]
  resources: ["streamingtrainingjobs/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["configmaps", "serviceaccounts", "services"]
  verbs: ["get", "create", "patch", "update"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create", "patch", "update"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["localqueues"]
  verbs: ["get"]
{{- end -}}

{{- define "tilestream.nodeRules" -}}
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
{{- end -}}

{{- define "tilestream.leaderElectionRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end -}}
