/** The operations GraphiQL opens with: run CreateJob, then paste the id into FollowJob. */
export const GRAPHIQL_EXAMPLE = `# Welcome! Put your key in the Headers tab below: {"API-Key": "sdk_..."}
# (the server printed one on its first start; create more with: npm run keys -- create --name NAME)

mutation CreateJob {
  text2image(input: {
    modelId: "sd1.5"
    prompt: "a cottage in the woods, watercolor"
    negativePrompt: "low quality, blurry"
    numInferenceSteps: 20
    guidanceScale: 7.5
    width: 512
    height: 512
    samples: 1
  }) {
    id
    status
    seed
    queuePosition
  }
}

subscription FollowJob {
  jobStatus(id: "paste the job id here") {
    status
    progress { step totalSteps fraction }
    downloadUrls
    error { code message }
  }
}

query Models {
  models { id name kind triggerWords }
}
`;
